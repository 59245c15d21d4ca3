"""Issue 16: no command ever exits 0 with an incomplete or wrong output.

One test (or a parametrized family) per mechanism, each through the real commands' `main`: a
failure is one line on stderr, exit 2, no traceback, no output and no temporary file left, and an
existing good output byte-identical afterwards.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from disk_helpers import tmpfs

from lrnnet._io import TEMP_MARK

ROOT = Path(__file__).resolve().parents[1]


def run_cli(command: str, argv: list[str], capsys) -> tuple[int, str]:
    status = importlib.import_module(f"lrnnet.cli.{command}").main([str(a) for a in argv])
    return status, capsys.readouterr().err


def assert_one_error_line(err: str, *expected: str) -> None:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], err
    assert "Traceback" not in err


def temps_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if TEMP_MARK in p.name]


# -- 2. never overwrite an input ----------------------------------------------------------------------


@pytest.mark.parametrize("alias", ["same", "symlink", "hardlink"])
def test_export_onto_its_own_checkpoint_is_refused(alias, tiny_checkpoint, tmp_path, capsys):
    checkpoint = tmp_path / "best.pth"
    shutil.copy(tiny_checkpoint, checkpoint)
    original = checkpoint.read_bytes()
    output = {"same": checkpoint, "symlink": tmp_path / "link.pth", "hardlink": tmp_path / "hard.pth"}[alias]
    if alias == "symlink":
        output.symlink_to(checkpoint)
    elif alias == "hardlink":
        os.link(checkpoint, output)

    status, err = run_cli("export", [checkpoint, "-o", output, "--height", "64", "--width", "128"], capsys)

    assert status == 2
    assert_one_error_line(err, "refusing to overwrite an input")
    assert checkpoint.read_bytes() == original
    assert temps_under(tmp_path) == []


def test_infer_report_onto_the_model_is_refused(tiny_onnx, synthetic_video, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(tiny_onnx, model)
    original = model.read_bytes()
    status, err = run_cli("infer", [synthetic_video, "--model", model, "-o", tmp_path / "o.mp4",
                                    "--report", model], capsys)
    assert status == 2
    assert_one_error_line(err, "a JSON output must end in .json")  # refused by name, before any file is looked at
    assert model.read_bytes() == original
    assert sorted(tmp_path.iterdir()) == [model]


# -- 1. outputs that cannot be written are refused before any work --------------------------------------


UNWRITABLE = {
    "infer --report is a folder": ("infer", ["{video}", "--model", "{onnx}", "-o", "{tmp}/o.mp4",
                                             "--report", "{tmp}/folder.json"], "is a directory"),
    "infer -o in a missing folder": ("infer", ["{video}", "--model", "{onnx}", "-o", "{tmp}/missing/o.mp4"],
                                     "does not exist"),
    "export -o is a folder": ("export", ["{pth}", "-o", "{tmp}/folder"], "is a directory"),
    "export -o in a missing folder": ("export", ["{pth}", "-o", "{tmp}/missing/m.onnx"], "does not exist"),
    "build -o in a missing folder": ("build_engine", ["--fp16", "--onnx", "{onnx}", "-o", "{tmp}/missing/e.onnx"],
                                     "does not exist"),
    "eval --json is a folder": ("eval", ["--model", "{onnx}", "--data", "{data}", "--json", "{tmp}/folder.json"],
                                "is a directory"),
    "bench --json is a device": ("bench", ["--model", "{onnx}", "--iters", "1", "--json", "{tmp}/device.json"],
                                 "not a regular file"),
    "bench --json in a missing folder": ("bench", ["--model", "{onnx}", "--iters", "1", "--warmup", "0",
                                                   "--json", "{tmp}/missing/b.json"], "does not exist"),
}


@pytest.mark.parametrize("case", UNWRITABLE)
def test_an_unwritable_output_is_refused_before_any_work(case, tiny_onnx, tiny_checkpoint, synthetic_video,
                                                         synthetic_root, tmp_path, capsys):
    command, argv, expected = UNWRITABLE[case]
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "device.json").symlink_to("/dev/full")
    values = {"tmp": tmp_path, "onnx": tiny_onnx, "pth": tiny_checkpoint, "video": synthetic_video,
              "data": synthetic_root}
    started = time.perf_counter()
    status, err = run_cli(command, [a.format(**values) for a in argv], capsys)
    assert status == 2
    assert_one_error_line(err, expected)
    assert time.perf_counter() - started < 10  # refused up front, not after the work
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device.json", "folder", "folder.json"]
    assert list((tmp_path / "folder").iterdir()) == [] and list((tmp_path / "folder.json").iterdir()) == []


# -- 6. machine limits: a full disk, a read-only folder -----------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 5 MiB tmpfs (CI runs as root); skipped with the reason where mount is refused."""
    with tmpfs(tmp_path / "disk", "5m") as disk:
        yield disk


def fill(disk: Path, leave_bytes: int) -> None:
    """Fill `disk` until about `leave_bytes` are free."""
    stats = os.statvfs(disk)
    free = stats.f_bavail * stats.f_frsize
    with open(disk / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))


def test_infer_to_a_full_disk_exits_2_and_keeps_the_old_output(small_disk, tiny_onnx, synthetic_video, capsys):
    good = small_disk / "out.mp4"
    shutil.copy(synthetic_video, good)
    original = good.read_bytes()
    fill(small_disk, leave_bytes=8 * 1024)

    status, err = run_cli("infer", [synthetic_video, "--model", tiny_onnx, "-o", good, "--warmup", "0"], capsys)

    assert status == 2
    assert_one_error_line(err, "disk is full")
    assert good.read_bytes() == original
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "out.mp4"]


def test_infer_labels_to_a_full_disk_leaves_no_empty_pngs(small_disk, tiny_onnx, synthetic_video, capsys):
    fill(small_disk, leave_bytes=16 * 1024)
    status, err = run_cli("infer", [synthetic_video, "--model", tiny_onnx, "--output", "labels",
                                    "-o", small_disk / "labels", "--warmup", "0"], capsys)
    assert status == 2
    assert_one_error_line(err, "disk is full")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


@pytest.mark.slow
def test_build_engine_to_a_full_disk_says_so(small_disk, tiny_onnx, capsys):
    good = small_disk / "lrnnet_fp16.onnx"
    good.write_bytes(b"an earlier engine")
    fill(small_disk, leave_bytes=64 * 1024)
    status, err = run_cli("build_engine", ["--fp16", "--onnx", tiny_onnx, "-o", good, "--backend", "onnxruntime"],
                          capsys)
    assert status == 2
    assert_one_error_line(err, "disk is full")
    assert good.read_bytes() == b"an earlier engine"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "lrnnet_fp16.onnx"]


def test_export_to_a_full_disk_exits_2(small_disk, tiny_checkpoint, capsys):
    fill(small_disk, leave_bytes=16 * 1024)
    status, err = run_cli("export", [tiny_checkpoint, "-o", small_disk / "m.onnx", "--height", "64",
                                     "--width", "128", "--no-verify"], capsys)
    assert status == 2
    assert_one_error_line(err, "disk is full")
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_read_only_folder_is_refused_up_front(small_disk, tiny_checkpoint, capsys):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    status, err = run_cli("export", [tiny_checkpoint, "-o", small_disk / "m.onnx"], capsys)
    assert status == 2
    assert_one_error_line(err, "read-only")


@pytest.mark.parametrize("argv, expected", [
    (["export", "{pth}", "-o", "{tmp}/m.onnx", "--height", "100000", "--width", "100000"], "too large"),
    (["infer", "{video}", "--model", "{pth}", "-o", "{tmp}/o.mp4", "--size", "100000x100000"], "too large"),
    (["eval", "--model", "{pth}", "--data", "{tmp}", "--size", "100000x100000"], "too large"),
    (["bench", "--model", "{pth}", "--height", "100000", "--width", "100000"], "too large"),
    (["infer", "{video}", "--model", "{pth}", "-o", "{tmp}/o.mp4", "--fps", "inf"], "finite"),
    (["infer", "{video}", "--model", "{pth}", "-o", "{tmp}/o.mp4", "--target-fps", "nan"], "finite"),
    (["train", "--synthetic", "--lr", "nan", "--out", "{tmp}/run"], "finite"),
])
def test_sizes_and_numbers_are_bounded_before_anything_is_allocated(argv, expected, tiny_checkpoint,
                                                                    synthetic_video, tmp_path, capsys):
    values = {"tmp": tmp_path, "pth": tiny_checkpoint, "video": synthetic_video}
    command, *rest = argv
    status, err = run_cli(command, [a.format(**values) for a in rest], capsys)
    assert status == 2
    assert_one_error_line(err, expected)
    assert list(tmp_path.iterdir()) == []


# -- 3. integrity: flipped bytes inside the weights ------------------------------------------------------


def flip_inside(path: Path, needle: bytes) -> None:
    """Flip one byte in the middle of `needle`'s (unique) occurrence in `path`."""
    data = bytearray(path.read_bytes())
    at = data.find(needle)
    assert at >= 0 and data.find(needle, at + 1) < 0
    data[at + len(needle) // 2] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.fixture
def corrupt_checkpoint(tiny_checkpoint, tmp_path) -> Path:
    import torch

    path = tmp_path / "corrupt.pth"
    shutil.copy(tiny_checkpoint, path)
    weight = torch.load(path, weights_only=True)["model"]["classifier.weight"]
    flip_inside(path, weight.numpy().tobytes())
    return path


@pytest.fixture
def corrupt_onnx(tiny_onnx, tmp_path) -> Path:
    import onnx
    from onnx import numpy_helper

    path = tmp_path / "corrupt.onnx"
    shutil.copy(tiny_onnx, path)
    model = onnx.load(str(path))
    biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    flip_inside(path, numpy_helper.to_array(biggest).tobytes())
    return path


def test_a_checkpoint_with_flipped_weight_bytes_is_refused(corrupt_checkpoint, synthetic_video, tmp_path, capsys):
    for command, argv in [
        ("export", [corrupt_checkpoint, "-o", tmp_path / "m.onnx", "--height", "64", "--width", "128"]),
        ("infer", [synthetic_video, "--model", corrupt_checkpoint, "-o", tmp_path / "o.mp4", "--size", "64x128"]),
    ]:
        status, err = run_cli(command, argv, capsys)
        assert status == 2, (command, err)
        assert_one_error_line(err, str(corrupt_checkpoint), "corrupt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.pth"]


@pytest.mark.slow
def test_an_onnx_with_flipped_initializer_bytes_is_refused(corrupt_onnx, synthetic_video, synthetic_root,
                                                           tmp_path, capsys):
    for command, argv in [
        ("build_engine", ["--fp16", "--onnx", corrupt_onnx, "-o", tmp_path / "e.onnx"]),
        ("infer", [synthetic_video, "--model", corrupt_onnx, "-o", tmp_path / "o.mp4"]),
        ("eval", ["--model", corrupt_onnx, "--data", synthetic_root, "--json", tmp_path / "r.json"]),
        ("bench", ["--model", corrupt_onnx, "--iters", "1", "--warmup", "0"]),
    ]:
        status, err = run_cli(command, argv, capsys)
        assert status == 2, (command, err)
        assert_one_error_line(err, str(corrupt_onnx), "corrupt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.onnx"]


def test_a_foreign_checkpoint_without_a_digest_is_accepted(tiny_checkpoint, tmp_path):
    import torch

    from lrnnet.models import load_checkpoint

    payload = torch.load(tiny_checkpoint, weights_only=True)
    plain = tmp_path / "plain.pth"
    torch.save(payload["model"], plain)  # a bare state dict, as another training script writes it
    load_checkpoint(plain)
    # Through the command (a fresh process, so its stderr is the command's own): exported, and the
    # user is told that nothing vouched for the weights.
    done = subprocess.run([sys.executable, "-m", "lrnnet.cli.export", str(plain), "-o", str(tmp_path / "plain.onnx"),
                           "--height", "64", "--width", "128", "--no-verify"], check=False, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "plain.onnx").is_file(), done.stderr
    assert f"note: {plain} carries no weights digest" in done.stderr


def test_an_engine_whose_bytes_changed_is_refused(tiny_onnx, tmp_path):
    from lrnnet.engine.sidecar import EngineSidecar, read_sidecar, write_sidecar
    from lrnnet.errors import InputError

    engine = tmp_path / "lrnnet_fp32.engine"
    engine.write_bytes(b"serialized engine bytes")
    write_sidecar(engine, EngineSidecar(backend="tensorrt", precision="fp32", source_onnx=str(tiny_onnx),
                                        source_sha256="0" * 64, input_profile={}, model_info={}))
    engine.write_bytes(b"serialized engine bytez")
    with pytest.raises(InputError, match="corrupt"):
        read_sidecar(engine)


# -- 4. metadata: one schema, held against the graph ------------------------------------------------------


BAD_METADATA = {
    "mean of 100": ("mean", "[100, 100, 100]", "mean"),
    "stride 0": ("stride", "0", "stride"),
    "precision int4": ("precision", '"int4"', "precision"),
    "not JSON": ("num_classes", "nineteen", "not JSON"),
    "wrong type": ("num_classes", '"19"', "num_classes"),
    "palette shorter than the classes": ("palette", "[[0, 0, 0]]", "colours"),
    "unknown layout": ("input_layout", '"NCHW int4"', "input_layout"),
}


def with_metadata(source: Path, target: Path, key: str, value: str) -> Path:
    import onnx

    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == f"lrnnet.{key}":
            prop.value = value
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize("case", BAD_METADATA)
def test_bad_metadata_is_refused_by_every_reader(case, tiny_onnx, synthetic_video, tmp_path, capsys):
    key, value, expected = BAD_METADATA[case]
    model = with_metadata(tiny_onnx, tmp_path / "bad.onnx", key, value)
    for command, argv in [
        ("infer", [synthetic_video, "--model", model, "-o", tmp_path / "o.mp4"]),
        ("build_engine", ["--fp16", "--onnx", model, "-o", tmp_path / "e.onnx"]),
    ]:
        status, err = run_cli(command, argv, capsys)
        assert status == 2, (command, err)
        assert_one_error_line(err, str(model), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx"]


@pytest.mark.parametrize("copied, expected", [("all", "corrupt"), ("all but the digest", "classes")])
def test_a_relu_graph_with_copied_lrnnet_metadata_is_refused(copied, expected, tiny_onnx, synthetic_video,
                                                             tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    source = onnx.load(str(tiny_onnx))
    graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "relu",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 128, 256])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 256])])
    relu = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    relu.ir_version = source.ir_version
    relu.metadata_props.extend(p for p in source.metadata_props
                               if copied == "all" or p.key != "lrnnet.weights_sha256")
    path = tmp_path / "relu.onnx"
    onnx.save(relu, str(path))
    status, err = run_cli("infer", [synthetic_video, "--model", path, "-o", tmp_path / "o.mp4"], capsys)
    assert status == 2
    assert_one_error_line(err, str(path), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu.onnx"]


# -- 7. signals and killed runs -------------------------------------------------------------------------------


@pytest.mark.slow
def test_sigterm_midway_leaves_no_output_and_no_temp(tiny_onnx, tmp_path):
    from lrnnet.data.synthetic import write_synthetic_video

    video = write_synthetic_video(tmp_path / "long.mp4", size=(64, 128), frames=300)  # the model resizes
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "LRNNET_NO_PROGRESS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "lrnnet.cli.infer", str(video), "--model", str(tiny_onnx),
                                "-o", str(out_dir / "seg.mp4"), "--report", str(out_dir / "r.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not temps_under(out_dir) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert temps_under(out_dir), "the run never started writing"
    time.sleep(0.5)  # midway
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert_one_error_line(err, "terminated by SIGTERM")
    assert list(out_dir.iterdir()) == []


def test_temps_of_a_killed_run_are_removed_by_the_next_run(tiny_onnx, synthetic_video, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".seg.mp4{TEMP_MARK}{dead.pid}-0000abcd.mp4"
    stale.write_bytes(b"half a video")
    alive = tmp_path / f".seg.mp4{TEMP_MARK}{os.getpid()}-0000abcd.mp4"  # a live writer's: left alone
    alive.write_bytes(b"being written")
    status, err = run_cli("infer", [synthetic_video, "--model", tiny_onnx, "-o", tmp_path / "seg.mp4",
                                    "--max-frames", "2", "--warmup", "0"], capsys)
    assert status == 0, err
    assert not stale.exists() and alive.exists()
    assert (tmp_path / "seg.mp4").is_file()


def test_all_outputs_of_a_command_commit_together_or_not_at_all(tmp_path, capsys):
    from lrnnet._io import write_json_atomic
    from lrnnet.cli._common import make_parser, run_command

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text('{"old": true}\n')

    def body(args) -> int:
        write_json_atomic(first, {"new": 1})  # committed ...
        write_json_atomic(second, {"new": 2})
        raise KeyboardInterrupt  # ... but the command is interrupted before it ends

    status = run_command("lrnnet-x", body, make_parser("lrnnet-x", "test"), [])
    assert status == 130
    assert first.read_text() == '{"old": true}\n'  # restored
    assert not second.exists()
    assert temps_under(tmp_path) == []


# -- 8. silently wrong is worse than failing ---------------------------------------------------------------


def test_eval_refuses_labels_of_another_size_than_their_image(synthetic_root, tiny_onnx, tmp_path, capsys):
    import cv2

    root = tmp_path / "cityscapes"
    shutil.copytree(synthetic_root, root)
    first = min((root / "gtFine" / "val").rglob("*_labelIds.png"))
    stem = first.name.split("_gtFine")[0]
    for label in (root / "gtFine" / "val").rglob(f"{stem}_gtFine_*Ids.png"):  # labelIds and labelTrainIds
        cv2.imwrite(str(label), np.zeros((13, 77), np.uint8))
    status, err = run_cli("eval", ["--model", tiny_onnx, "--data", root, "--json", tmp_path / "r.json"], capsys)
    assert status == 2
    assert_one_error_line(err, stem, "must match its image")
    assert not (tmp_path / "r.json").exists()


def test_eval_refuses_a_model_of_another_class_count(synthetic_root, tmp_path, capsys):
    from lrnnet.models import LRNNet, save_checkpoint

    model = tmp_path / "five.pth"
    save_checkpoint(model, LRNNet(num_classes=5))
    status, err = run_cli("eval", ["--model", model, "--data", synthetic_root, "--size", "64x128",
                                   "--json", tmp_path / "r.json"], capsys)
    assert status == 2
    assert_one_error_line(err, "5 classes", "19")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["five.pth"]


def test_a_resumable_command_keeps_what_it_committed_when_interrupted(tmp_path):
    from lrnnet._io import write_json_atomic
    from lrnnet.cli._common import make_parser, run_command

    checkpoint = tmp_path / "last.json"

    def body(args) -> int:
        write_json_atomic(checkpoint, {"step": 1})
        raise KeyboardInterrupt

    status = run_command("lrnnet-x", body, make_parser("lrnnet-x", "test"), [], all_or_nothing=False)
    assert status == 130
    assert checkpoint.read_text().startswith('{\n  "step": 1')
    assert temps_under(tmp_path) == []


def test_train_to_a_full_disk_exits_2(small_disk, capsys):
    fill(small_disk, leave_bytes=64 * 1024)
    status, err = run_cli("train", ["--synthetic", "--iters", "1", "--size", "64x128", "--crop", "64x128",
                                    "--out", small_disk / "run"], capsys)
    assert status == 2
    assert_one_error_line(err, "disk is full")
    assert temps_under(small_disk) == []


@pytest.mark.parametrize("command, argv", [
    ("train", ["--synthetic", "--iters", "1", "--out", "{disk}/runs/lrnnet"]),
    ("demo", ["--quick", "--workdir", "{disk}/demo"]),
])
def test_run_folders_on_a_read_only_disk_are_refused_up_front(command, argv, small_disk, capsys):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    status, err = run_cli(command, [a.format(disk=small_disk) for a in argv], capsys)
    assert status == 2
    assert_one_error_line(err, "read-only")


def test_eval_failing_midway_leaves_no_predictions_folder(synthetic_root, tiny_onnx, tmp_path, capsys):
    import cv2

    root = tmp_path / "cityscapes"
    shutil.copytree(synthetic_root, root)
    last = max((root / "gtFine" / "val").rglob("*_labelIds.png"))  # the first images score, the last is bad
    stem = last.name.split("_gtFine")[0]
    for label in (root / "gtFine" / "val").rglob(f"{stem}_gtFine_*Ids.png"):
        cv2.imwrite(str(label), np.zeros((13, 77), np.uint8))
    status, err = run_cli("eval", ["--model", tiny_onnx, "--data", root, "--save-predictions", tmp_path / "pred",
                                   "--json", tmp_path / "r.json"], capsys)
    assert status == 2
    assert_one_error_line(err, stem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cityscapes"]


@pytest.mark.slow
def test_out_of_memory_is_the_machines_limit_not_a_bug(tiny_checkpoint, tmp_path):
    import resource

    def limit_memory() -> None:  # 3 GiB of address space: torch loads, a 8192x8192 batch does not fit
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    result = subprocess.run([sys.executable, "-m", "lrnnet.cli.bench", "--model", str(tiny_checkpoint),
                             "--height", "8192", "--width", "8192", "--iters", "1", "--warmup", "0"],
                            capture_output=True, text=True, timeout=300, preexec_fn=limit_memory, cwd=tmp_path,
                            check=False)
    assert result.returncode == 2, result.stderr
    assert_one_error_line(result.stderr, "out of memory")
