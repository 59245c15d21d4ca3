"""lrnnet-infer end to end on real exports and checkpoints: outputs read back, the report, and bad input."""

from __future__ import annotations

import json
import logging
import os
import shutil

import cv2
import numpy as np
import pytest
from runtime_helpers import (
    TINY_SIZE,
    checkpoint_validated_at,
    read_video,
    rewrite_metadata,
    write_trimmed_video,
    write_truncated_video,
)

from lrnnet.cli.infer import main
from lrnnet.data.preprocess import overlay, resize_labels
from lrnnet.runtime import open_runner

REPORT_KEYS = {"frames", "resolution", "backend", "precision", "device", "latency_ms", "model_fps",
               "end_to_end_fps", "target", "corrupt_frames_skipped", "source", "output", "input_size"}


@pytest.fixture(autouse=True)
def fresh_logging():
    """Each in-process CLI run sets up its own stderr handler: the one left by an earlier test would write to
    that test's (closed) captured stream."""
    logger = logging.getLogger("lrnnet")
    saved = logger.handlers[:]
    logger.handlers.clear()
    yield
    logger.handlers[:] = saved


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([*map(str, argv), "--no-progress"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_onnx_overlay_video_and_report(tiny_onnx, synthetic_video, tmp_path, capsys):
    video = shutil.copy(synthetic_video, tmp_path / "street.mp4")
    rc, out, err = run(capsys, video, "--model", tiny_onnx, "--report", tmp_path / "report.json")
    assert rc == 0, err
    output = tmp_path / "street_seg.mp4"  # the default name, beside the source
    frames_in, frames_out = read_video(video), read_video(output)
    assert len(frames_out) == len(frames_in) == 12
    assert all(f.shape == (128, 256, 3) for f in frames_out)

    report = json.loads((tmp_path / "report.json").read_text())
    assert REPORT_KEYS <= report.keys()
    assert report["frames"] == 12 and report["backend"] == "onnxruntime" and report["precision"] == "fp32"
    assert report["target"]["model_only"]["target_fps"] == 71.0
    assert "GTX 1080Ti" in report["target"]["model_only"]["note"]  # another device, said so
    assert report["latency_ms"]["infer"]["count"] == 12
    for word in ("decode", "preprocess", "infer", "postprocess", "encode", "Model-only FPS", "End-to-end FPS",
                 "71"):
        assert word in out

    # The overlay is the model's classes coloured over the frames (oracle: the runner's own predict).
    with open_runner(tiny_onnx) as runner:
        palette = np.asarray(runner.info.palette, np.uint8)
        for frame, got in list(zip(frames_in, frames_out))[::4]:
            labels = resize_labels(runner.predict([frame])[0].astype(np.uint8), frame.shape[:2])
            assert len(np.unique(labels)) > 1
            want = overlay(frame, labels, 0.5, palette)
            # mp4v is lossy twice over (the source and the output), mostly at colour edges: a typical pixel
            # is within a few levels of the oracle, while the overlay moves it far from the plain frame.
            error = np.abs(got.astype(int) - want)
            assert np.median(error) <= 4 and error.mean() < 8.0
            assert np.abs(got.astype(int) - frame).mean() > 4 * error.mean()


@pytest.mark.slow
def test_checkpoint_labels_match_the_onnx_run(tiny_checkpoint, tiny_onnx, synthetic_video, tmp_path, capsys):
    """The .pth through PyTorch and the ONNX through ONNX Runtime give the same trainId PNGs (backend agreement
    through the whole pipeline, lossless output)."""
    rc, _, err = run(capsys, synthetic_video, "--model", tiny_checkpoint, "--size", "128x256", "--output", "labels",
                     "-o", tmp_path / "torch", "--max-frames", "3", "--warmup", "0")
    assert rc == 0, err
    rc, _, err = run(capsys, synthetic_video, "--model", tiny_onnx, "--output", "labels", "-o", tmp_path / "onnx",
                     "--max-frames", "3", "--warmup", "0")
    assert rc == 0, err
    names = sorted(p.name for p in (tmp_path / "torch").glob("*.png"))
    assert names == sorted(p.name for p in (tmp_path / "onnx").glob("*.png")) and len(names) == 3
    for name in names:
        a = cv2.imread(str(tmp_path / "torch" / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "onnx" / name), cv2.IMREAD_UNCHANGED)
        assert a.shape == (128, 256) and (a == b).mean() > 0.999


def test_default_model_is_found_in_the_current_directory(tiny_onnx, synthetic_video, tmp_path, capsys,
                                                         monkeypatch):
    shutil.copy(tiny_onnx, tmp_path / "lrnnet.onnx")
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, synthetic_video, "-o", "out.mp4", "--max-frames", "2", "--output", "mask")
    assert rc == 0, err
    assert "lrnnet.onnx" in out.splitlines()[0]  # it says which model it chose
    assert len(read_video(tmp_path / "out.mp4")) == 2


def write_unreadable_codec(path):
    """A valid AVI whose codec tag names no decoder (MJPG renamed): the container opens, nothing decodes."""
    writer = cv2.VideoWriter(str(path.with_suffix(".tmp.avi")), cv2.VideoWriter.fourcc(*"MJPG"), 17, (64, 32))
    for i in range(3):
        writer.write(np.full((32, 64, 3), 60 * i, np.uint8))
    writer.release()
    data = path.with_suffix(".tmp.avi").read_bytes()
    path.with_suffix(".tmp.avi").unlink()
    assert b"MJPG" in data
    path.write_bytes(data.replace(b"MJPG", b"QQQQ"))
    return path


@pytest.mark.parametrize("case", ["missing", "not_a_video", "zero_frames", "unreadable_codec", "foreign_onnx",
                                  "no_model", "wrong_suffix", "engine_without_tensorrt"])
def test_bad_input_is_one_line_exit_2_and_no_output(case, tiny_onnx, synthetic_video, tmp_path, capsys,
                                                   monkeypatch):
    from lrnnet.engine.device import tensorrt_version

    monkeypatch.chdir(tmp_path)
    video, model, extra = str(synthetic_video), str(tiny_onnx), []
    if case == "missing":
        video = "nope.mp4"
    elif case == "not_a_video":
        video = "notes.mp4"
        (tmp_path / video).write_text("not a video")
    elif case == "zero_frames":
        video = "empty.mp4"
        cv2.VideoWriter(video, cv2.VideoWriter.fourcc(*"mp4v"), 17, (256, 128)).release()
    elif case == "unreadable_codec":
        video = str(write_unreadable_codec(tmp_path / "codec.avi").name)
    elif case == "foreign_onnx":
        model = str(rewrite_metadata(tiny_onnx, tmp_path / "foreign.onnx", strip=True))
    elif case == "no_model":
        model = ""
    elif case == "wrong_suffix":
        extra = ["-o", "out.gif"]
    elif case == "engine_without_tensorrt":
        if tensorrt_version() is not None:
            pytest.skip("TensorRT is installed here")
        model = "lrnnet.engine"
        (tmp_path / model).write_bytes(b"engine bytes")
    before = set(tmp_path.rglob("*"))
    rc, _, err = run(capsys, video, *(["--model", model] if model else []), *extra)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrnnet-infer: error: "), err
    assert set(tmp_path.rglob("*")) == before  # no output, no temporary file


def test_image_folder_source_with_corrupt_frame(tiny_onnx, tmp_path, capsys):
    from lrnnet.data.synthetic import write_synthetic_demo_video

    folder = write_synthetic_demo_video(tmp_path / "cs", size=TINY_SIZE, frames=4)
    sorted(folder.glob("*.png"))[1].write_bytes(b"broken")
    rc, out, err = run(capsys, folder, "--model", tiny_onnx, "--report", tmp_path / "r.json", "--warmup", "0")
    assert rc == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["frames"] == 3 and report["corrupt_frames_skipped"] == 1 and report["source_type"] == "images"
    assert len(read_video(folder.resolve().with_name(f"{folder.name}_seg.mp4"))) == 3
    assert "1 corrupt skipped" in out


def test_the_command_prints_one_line_even_when_ffmpeg_has_things_to_say(tiny_onnx, tmp_path):
    """In a real process (stderr at the file-descriptor level, where OpenCV and FFmpeg write their own logs)."""
    import subprocess
    import sys

    video = write_unreadable_codec(tmp_path / "codec.avi")
    result = subprocess.run([sys.executable, "-m", "lrnnet.cli.infer", str(video), "--model", str(tiny_onnx)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    expected = f"lrnnet-infer: error: {video} is not a video OpenCV can open (not a video, or an unreadable codec)"
    assert result.stderr.strip().splitlines() == [expected]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["codec.avi"]


def test_one_source_names_its_output_as_a_batch_would(tiny_onnx, synthetic_video, tmp_path, capsys):
    """The single-process path and the Ray batch path agree on output names (one rule, two callers)."""
    from lrnnet.runtime.batch import output_name

    video = shutil.copy(synthetic_video, tmp_path / "street.mp4")
    rc, _, err = run(capsys, video, "--model", tiny_onnx, "--max-frames", "2", "--warmup", "0")
    assert rc == 0, err
    rc, _, err = run(capsys, video, "--model", tiny_onnx, "--max-frames", "2", "--warmup", "0", "--output", "labels")
    assert rc == 0, err
    assert (tmp_path / output_name(str(video), "overlay")).is_file()
    assert (tmp_path / output_name(str(video), "labels")).is_dir()


@pytest.mark.parametrize("case", ["holds the video", "holds the model", "parent of the image folder",
                                  "someone else's files"])
def test_a_labels_folder_never_replaces_inputs_or_foreign_files(case, tiny_onnx, synthetic_video, tmp_path, capsys):
    """--output labels replaces its folder as a whole: a folder holding an input, or files lrnnet did not write, is
    refused before anything runs (one line, exit 2), and every file in it is left as it was."""
    from lrnnet.data.synthetic import write_synthetic_demo_video

    folder = tmp_path / "work"
    folder.mkdir()
    video, model = shutil.copy(synthetic_video, folder / "street.mp4"), tiny_onnx
    if case == "holds the model":
        video, model = synthetic_video, shutil.copy(tiny_onnx, folder / "model.onnx")
    elif case == "parent of the image folder":
        video = write_synthetic_demo_video(folder / "seq", size=TINY_SIZE, frames=2)
    elif case == "someone else's files":
        video = shutil.move(video, tmp_path / "street.mp4")
        (folder / "notes.txt").write_text("mine")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    rc, _, err = run(capsys, video, "--model", model, "--output", "labels", "-o", folder, "--max-frames", "2")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("lrnnet-infer: error: "), err
    assert ("holds files lrnnet did not write" if case == "someone else's files" else "holds the input") in err
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_a_labels_folder_of_an_earlier_run_is_replaced(tiny_onnx, synthetic_video, tmp_path, capsys):
    out = tmp_path / "labels"
    for frames in ("3", "2"):  # the rerun replaces lrnnet's own folder as a whole
        rc, _, err = run(capsys, synthetic_video, "--model", tiny_onnx, "--output", "labels", "-o", out,
                         "--max-frames", frames, "--warmup", "0")
        assert rc == 0, err
    assert sorted(p.name for p in out.glob("*.png")) == [f"frame_{i:06d}_trainIds.png" for i in range(2)]


@pytest.mark.parametrize("report", ["other.mp4", "report", "clips.txt"])
def test_a_json_report_must_be_named_json(report, tiny_onnx, synthetic_video, tmp_path, capsys):
    """--report other.mp4 (an existing video, not an input) would be overwritten by JSON: refused up front."""
    target = tmp_path / report
    target.write_bytes(b"not a report")
    rc, _, err = run(capsys, synthetic_video, "--model", tiny_onnx, "--report", target, "-o", tmp_path / "o.mp4")
    expected = f"lrnnet-infer: error: argument --report: a JSON output must end in .json, got '{target}' " \
               "(see lrnnet-infer --help)"
    assert rc == 2 and err.strip().splitlines() == [expected]
    assert target.read_bytes() == b"not a report" and not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["--fps", "0.0001"], "argument --fps: frame rate 0.0001 is out of range (0.01 to 1000 fps)"),
    (["--fps", "1e9"], "argument --fps: frame rate 1e+09 is out of range (0.01 to 1000 fps)"),
    (["--timeout", "3000"], "argument --timeout: timeout 3000 s is out of range (0.01 to 2147 s)"),
    (["--timeout", "0"], "argument --timeout: timeout 0 s is out of range (0.01 to 2147 s)"),
])
def test_a_rate_or_timeout_the_encoders_or_ffmpeg_cannot_take_is_a_usage_error(argv, expected, tiny_onnx,
                                                                               synthetic_video, tmp_path, capsys):
    rc, _, err = run(capsys, synthetic_video, "--model", tiny_onnx, "-o", tmp_path / "o.mp4", *argv)
    assert rc == 2 and err.strip().splitlines() == [f"lrnnet-infer: error: {expected} (see lrnnet-infer --help)"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("source", "expected"), [
    ("99999999999999999999", "camera index 99999999999999999999 is out of range (0 to 99)"),
    ("²", "source ² does not exist (a video file, an image folder, a camera index or a URL)"),
])
def test_a_camera_index_that_is_no_camera_is_one_line(source, expected, tiny_onnx, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(capsys, source, "--model", tiny_onnx)
    assert rc == 2 and err.strip().splitlines() == [f"lrnnet-infer: error: {expected}"]
    assert list(tmp_path.iterdir()) == []


def test_an_image_folder_with_two_images_of_one_stem_is_one_line(tiny_onnx, tmp_path, capsys):
    folder = tmp_path / "seq"
    folder.mkdir()
    for name in ("a.png", "a.jpg"):
        cv2.imwrite(str(folder / name), np.full((32, 64, 3), 90, np.uint8))
    rc, _, err = run(capsys, folder, "--model", tiny_onnx, "--output", "labels", "-o", tmp_path / "labels")
    assert rc == 2 and err.strip().splitlines() == [
        f"lrnnet-infer: error: image folder {folder} holds a.jpg and a.png: two frames named a; keep one of them"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq"]


def test_a_checkpoint_runs_at_the_size_it_records_without_size(tiny_checkpoint, synthetic_video, tmp_path, capsys):
    """No --size: the size the checkpoint was validated at (as lrnnet-eval and lrnnet-export pick it), said once."""
    model = checkpoint_validated_at(tiny_checkpoint, tmp_path / "small.pth", (64, 128))
    rc, out, err = run(capsys, synthetic_video, "--model", model, "--output", "labels", "-o", tmp_path / "labels",
                       "--max-frames", "1", "--warmup", "0", "--report", tmp_path / "r.json")
    assert rc == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["input_size"] == [64, 128]
    assert "Size: 64x128 (the size it was validated at; --size sets another)" in out


def fake_built_engine(tiny_onnx, path, mtime):
    """`tiny_onnx` copied as an ONNX Runtime engine with its sidecar (what lrnnet-build-engine leaves), dated."""
    import dataclasses
    import os

    from lrnnet._io import file_sha256
    from lrnnet.engine.sidecar import EngineSidecar, write_sidecar
    from lrnnet.export.metadata import read_model_info

    shutil.copy(tiny_onnx, path)
    write_sidecar(path, EngineSidecar(backend="onnxruntime", precision="fp32", source_onnx=str(tiny_onnx),
                                      source_sha256=file_sha256(tiny_onnx), input_profile={},
                                      model_info=dataclasses.asdict(read_model_info(tiny_onnx)),
                                      target="onnxruntime"))
    os.utime(path, (mtime, mtime))
    return path


@pytest.mark.parametrize("damage", ["truncated engine", "unreadable sidecar"])
def test_a_damaged_newest_engine_is_refused_not_replaced_by_an_older_one(damage, tiny_onnx, synthetic_video,
                                                                         tmp_path, capsys, monkeypatch):
    from lrnnet.cli.infer import default_model
    from lrnnet.errors import InputError

    monkeypatch.chdir(tmp_path)
    fake_built_engine(tiny_onnx, tmp_path / "lrnnet_fp32.onnx", 1_000_000)
    newest = fake_built_engine(tiny_onnx, tmp_path / "lrnnet_int8.onnx", 2_000_000)
    if damage == "truncated engine":
        newest.write_bytes(newest.read_bytes()[:1000])
        os.utime(newest, (2_000_000, 2_000_000))
    else:
        newest.with_name(newest.name + ".json").write_text("{not json")
    with pytest.raises(InputError, match=r"the newest built engine here, lrnnet_int8\.onnx, is damaged"):
        default_model(tmp_path.relative_to(tmp_path))
    before = set(tmp_path.rglob("*"))
    rc, _, err = run(capsys, synthetic_video, "-o", "out.mp4", "--max-frames", "1")
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and "lrnnet_int8.onnx, is damaged" in lines[0], err
    assert set(tmp_path.rglob("*")) == before


def test_a_trimmed_video_is_not_damaged(tiny_onnx, tmp_path, capsys):
    """An MP4 whose edit list starts after its first 5 frames lists 30 and shows 25: FFmpeg drops the 5 on purpose
    (they were counted lost, 'damaged', exit 2)."""
    video = write_trimmed_video(tmp_path / "trimmed.mp4")
    rc, _, err = run(capsys, video, "--model", tiny_onnx, "--warmup", "0", "--report", tmp_path / "r.json")
    assert rc == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["damage"] is None and report["frames_missing"] == 0
    assert report["frames"] == 25 and report["frames_expected"] == 30
    assert len(read_video(tmp_path / "trimmed_seg.mp4")) == 25


def test_a_truncated_video_keeps_its_frames_and_exits_2_saying_so(tiny_onnx, tmp_path, capsys):
    """30 frames listed, 1 decodes (FFmpeg ends without an error): the output and report keep that frame, both
    say it, and the command exits 2 with one line (it was 'done', exit 0, and only a log warning)."""
    video = write_truncated_video(tmp_path / "cut.mp4")
    rc, out, err = run(capsys, video, "--model", tiny_onnx, "--warmup", "0", "--report", tmp_path / "r.json")
    note = "29 of 30 listed frames could not be decoded (damaged file?)"
    assert rc == 2
    lines = err.strip().splitlines()  # info lines (the thread plan, the runner), then the one error
    assert lines[-1] == f"lrnnet-infer: error: {video}: {note}; {tmp_path / 'cut_seg.mp4'} keeps the 1 that decoded"
    assert not [line for line in lines[:-1] if "error" in line or "damaged" in line], err
    assert f"Damaged    {note}" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["damage"] == note and report["frames"] == 1 and report["frames_expected"] == 30
    assert len(read_video(tmp_path / "cut_seg.mp4")) == 1
