"""Many sources on a real local Ray (2 workers): every output complete and in order, a bad source isolated,
reruns that skip finished work, the batch report, and bad input that fails at once without output."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from runtime_helpers import checkpoint_validated_at, read_video, write_trimmed_video, write_truncated_video

from lrnnet._io import OUTPUT_MARKER, file_sha256
from lrnnet._threads import usable_cpus
from lrnnet.cli.infer import main
from lrnnet.data.synthetic import write_synthetic_video
from lrnnet.errors import InputError
from lrnnet.runtime import open_runner
from lrnnet.runtime.batch import (
    BatchOptions,
    SourceJob,
    is_complete,
    make_output_dir,
    output_settings,
    plan_jobs,
    read_sources,
    run_batch,
)
from lrnnet.runtime.video import PipelineOptions, run_video

ray = pytest.importorskip("ray", reason="Ray is the lrnnet[ray] extra (make install installs it)")

VIDEO_SIZE = (64, 128)
FRAMES = 10
GOOD = ("north", "south", "east", "west")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the whole file (starting one takes seconds); run_batch joins it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@pytest.fixture(autouse=True)
def fresh_logging():
    """Each in-process CLI run sets up its own stderr handler (see test_infer_cli.py)."""
    logger = logging.getLogger("lrnnet")
    saved = logger.handlers[:]
    logger.handlers.clear()
    yield
    logger.handlers[:] = saved


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """Four street videos (different seeds, so each output differs) and a corrupt one."""
    folder = tmp_path_factory.mktemp("batch_sources")
    videos = {name: write_synthetic_video(folder / f"{name}.mp4", size=VIDEO_SIZE, frames=FRAMES, seed=seed)
              for seed, name in enumerate(GOOD)}
    corrupt = folder / "broken.mp4"
    corrupt.write_bytes(videos["north"].read_bytes()[: 600])  # a header cut short: no frame decodes
    videos["broken"] = corrupt
    return videos


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory) -> list[Path]:
    """Two videos long enough to stop a job while its workers write them."""
    folder = tmp_path_factory.mktemp("long_sources")
    return [write_synthetic_video(folder / f"long_{i}.mp4", size=VIDEO_SIZE, frames=600, seed=i) for i in range(2)]


@pytest.fixture(scope="module")
def first_run(local_ray, sources, tiny_onnx, tmp_path_factory):
    """lrnnet-infer on the five sources, 2 workers pinned to their CPUs, into a fresh folder: (rc, stdout,
    stderr, out dir, report)."""
    root = tmp_path_factory.mktemp("batch_run")
    out, report = root / "out", root / "report.json"
    rc, stdout, stderr = _cli(*sources.values(), "--model", tiny_onnx, "--output-dir", out, "--workers", "2",
                              "--report", report, "--pin-cpus")
    return rc, stdout, stderr, out, json.loads(report.read_text())


def _cli(*argv, capsys=None) -> tuple[int, str, str]:
    """Run lrnnet-infer in this process; capsys where the test has it (the log handler follows it)."""
    import contextlib
    import io

    if capsys is not None:
        rc = main([*map(str, argv), "--no-progress"])
        captured = capsys.readouterr()
        return rc, captured.out, captured.err
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main([*map(str, argv), "--no-progress"])
    return rc, stdout.getvalue(), stderr.getvalue()


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_four_outputs_complete_and_in_order_and_the_bad_one_reported(first_run, sources, tiny_onnx, tmp_path):
    rc, stdout, stderr, out, report = first_run
    assert rc == 2, stderr  # one source failed: non-zero at the end, after the others finished
    assert "1 of 5 sources failed" in stderr and "broken.mp4" in stdout
    # A line per finished source in a log too (no terminal here), the failed one with its reason
    assert sum(line.startswith("done    ") for line in stderr.splitlines()) == 4, stderr
    assert any(line.startswith("failed  ") and "broken.mp4" in line for line in stderr.splitlines()), stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}_seg.mp4" for n in GOOD] + [f"{n}_seg.mp4.json" for n in GOOD])  # nothing for the broken one

    # Oracle: the single-process path on the same videos with the same model.
    with open_runner(tiny_onnx, threads=1) as runner:
        for name in GOOD:
            reference = tmp_path / f"{name}_seg.mp4"
            run_video(runner, sources[name], reference, PipelineOptions())
            got, want = read_video(out / f"{name}_seg.mp4"), read_video(reference)
            assert len(got) == len(want) == FRAMES
            for index, frame in enumerate(got):  # frame i is the reference's frame i, not a neighbour
                errors = [np.abs(frame.astype(int) - other).mean() for other in want]
                assert int(np.argmin(errors)) == index and errors[index] < 1.0, (name, index, errors)

    assert [Path(e["source"]).name for e in report["sources"]] == [f"{n}.mp4" for n in GOOD] + ["broken.mp4"]
    by_name = {Path(e["source"]).stem: e for e in report["sources"]}
    assert by_name["broken"]["status"] == "failed" and "broken.mp4" in by_name["broken"]["error"]
    assert "\n" not in by_name["broken"]["error"]
    for name in GOOD:
        entry = by_name[name]
        assert entry["status"] == "done" and entry["error"] is None and entry["frames"] == FRAMES
        assert entry["fps"] > 0 and set(entry["latency_ms"]) >= {"p50", "p90", "p99"}
    assert report["done"] == 4 and report["failed"] == 1 and report["skipped"] == 0
    assert report["total_frames"] == 4 * FRAMES and report["frames_per_s"] > 0 and report["workers"] == 2
    assert report["ray_address"] and report["lrnnet_version"] and "CPU" in report["device"]
    # Which actor took which source is Ray Data's choice (an actor that starts late may get none of five short
    # sources); that two run at once is shown by test_a_source_that_kills_its_worker_fails_alone_after_a_second_try.
    assert all(e["worker"] for e in report["sources"])


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="pinning needs Linux and at least 2 CPUs to share")
def test_each_worker_runs_on_its_own_cpus(first_run):
    """2 workers x 1 thread on 2 CPUs: each actor pinned to 1 CPU, the two disjoint, and no actor used more
    CPU time than its CPUs give (decode, infer, encode and FFmpeg's threads included)."""
    _, _, _, _, report = first_run
    assert report["threads_per_worker"] == 1
    done = [e for e in report["sources"] if e["status"] == "done"]
    by_worker: dict[str, set[int]] = {}
    for entry in done:
        assert len(entry["cpus"]) == 1, entry  # read in the actor, by the thread that segments the source
        assert set(by_worker.setdefault(entry["worker"], set(entry["cpus"]))) == set(entry["cpus"])
        assert 0 < entry["cpu_s"] <= (entry["finished_at"] - entry["started_at"]) + 0.05, entry
    cpu_sets = list(by_worker.values())
    assert all(a.isdisjoint(b) for i, a in enumerate(cpu_sets) for b in cpu_sets[i + 1:]), by_worker


_CLAIM = """
import json, os, sys
from lrnnet.runtime.batch import claim_cpus
cpus, locks = claim_cpus(int(sys.argv[1]))
print(json.dumps({"cpus": cpus, "affinity": sorted(os.sched_getaffinity(0))}), flush=True)
sys.stdin.read()  # hold the claim until the test closes stdin
"""


def _claimant(count: int) -> tuple[subprocess.Popen, list[int] | None, list[int]]:
    """A process that claims `count` CPUs and holds them: (it, the CPUs it got or None, its affinity)."""
    process = subprocess.Popen([sys.executable, "-c", _CLAIM, str(count)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    answer = json.loads(process.stdout.readline())
    return process, answer["cpus"], answer["affinity"]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="pinning needs Linux and at least 2 CPUs to share")
def test_cpu_claims_are_exclusive_and_freed_when_the_holder_dies():
    """Real processes: a second worker gets other CPUs than the first, none when too few are free (it then
    keeps the whole affinity), and a SIGKILLed holder's CPUs are free for the next (a restarted actor)."""
    import signal
    import socket

    allowed = sorted(os.sched_getaffinity(0))
    for cpu in allowed:  # another lrnnet batch running on this machine holds some: the test cannot own them
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.bind(f"\0lrnnet-cpu-{cpu}")
        except OSError:
            pytest.skip(f"CPU {cpu} is held by an lrnnet worker running on this machine")
        finally:
            probe.close()
    first, first_cpus, first_affinity = _claimant(len(allowed) - 1)
    try:
        assert first_cpus is not None and len(first_cpus) == len(allowed) - 1 and first_affinity == first_cpus
        crowded, none, crowded_affinity = _claimant(2)  # only one CPU is free
        crowded.communicate("")
        assert none is None and crowded_affinity == allowed
        second, second_cpus, second_affinity = _claimant(1)
        second.communicate("")
        assert second_cpus == second_affinity and len(second_cpus) == 1 and not set(second_cpus) & set(first_cpus)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        after, after_cpus, _ = _claimant(len(allowed) - 1)
        after.communicate("")
        assert after_cpus == first_cpus
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_rerun_skips_the_four_complete_outputs_without_rewriting_them(first_run, sources, tiny_onnx, capsys,
                                                                      caplog):
    _, _, _, out, _ = first_run
    before = _mtimes(out)
    rc, stdout, stderr = _cli(*sources.values(), "--model", tiny_onnx, "--output-dir", out, "--workers", "2",
                              capsys=capsys)
    assert rc == 2  # the broken source is tried again, and fails again
    # The log line reaches stderr in a command; in pytest Ray Data's logging setup may route it to caplog.
    assert "Skipped 4 already complete" in stderr + caplog.text and "4 skipped already complete" in stdout
    assert _mtimes(out) == before

    good = [sources[name] for name in GOOD]
    report = run_batch(good, tiny_onnx, out, BatchOptions(workers=2))
    assert report["skipped"] == 4 and report["done"] == report["failed"] == 0
    assert report["ray_address"] is None  # nothing to do: no Ray needed
    assert _mtimes(out) == before


@pytest.mark.parametrize("address", ["not an address!", "10.0.0.5", "host:0", "host:99999", "http://host:6379",
                                     "a b:6379", ":6379"])
def test_a_malformed_ray_address_is_refused_even_when_every_source_is_complete(address, first_run, sources,
                                                                               tiny_onnx, capsys):
    """The rerun would skip everything and never connect: the address's form is checked up front all the same."""
    _, _, _, out, _ = first_run
    before = _mtimes(out)
    good = [sources[name] for name in GOOD]
    rc, _, stderr = _cli(*good, "--model", tiny_onnx, "--output-dir", out, "--ray-address", address, capsys=capsys)
    expected = (f"lrnnet-infer: error: --ray-address {address!r}: expected HOST:PORT (the head's GCS, e.g. "
                "10.0.0.5:6379), ray://HOST:PORT or auto")
    assert rc == 2 and stderr.strip().splitlines() == [expected], stderr
    assert _mtimes(out) == before


def test_well_formed_ray_addresses_are_accepted():
    from lrnnet.runtime.batch import check_ray_address_form

    assert check_ray_address_form("auto") is None
    assert check_ray_address_form("10.0.0.5:6379") == ("10.0.0.5", 6379)
    assert check_ray_address_form("ray://head.example.com:10001") == ("head.example.com", 10001)
    assert check_ray_address_form("[::1]:6379") == ("::1", 6379)
    for typed_with_a_space in (" 10.0.0.5:6379", "10.0.0.5:6379 "):  # ray.init would get the space
        with pytest.raises(InputError, match="expected HOST:PORT"):
            check_ray_address_form(typed_with_a_space)


def test_a_marker_of_another_model_source_or_setting_is_not_complete(first_run, sources, tiny_onnx, tmp_path):
    _, _, _, out, _ = first_run
    def settings(**changes):
        return output_settings(BatchOptions(**{"workers": 2, "pin_cpus": True, **changes}), "onnxruntime")

    digest = file_sha256(tiny_onnx)
    job = SourceJob(0, str(sources["north"]), out / "north_seg.mp4")
    assert is_complete(job, digest, settings()) is not None
    assert is_complete(job, digest, settings(runner_options={"threads": 1}, workers=1)) is not None  # speed only
    assert is_complete(job, "0" * 64, settings()) is None  # a stale output of another model is redone
    assert is_complete(job, digest, settings(pipeline=PipelineOptions(output_kind="mask"))) is None
    assert is_complete(job, digest, settings(pipeline=PipelineOptions(max_frames=3))) is None
    assert is_complete(job, digest, settings(device="cuda")) is None
    assert is_complete(job, digest, settings(runner_options={"size": (16, 32)})) is None  # a checkpoint's --size
    assert is_complete(job, digest, output_settings(BatchOptions(), "torch")) is None

    copy = tmp_path / "north.mp4"  # the same name, another file (its size/mtime differ)
    copy.write_bytes(sources["north"].read_bytes() + b"\0")
    assert is_complete(SourceJob(0, str(copy), out / "north_seg.mp4"), digest, settings()) is None


@pytest.mark.slow
def test_a_changed_output_is_redone_and_labels_folders_resume(local_ray, sources, tiny_onnx, tmp_path):
    good = [sources[name] for name in GOOD[:2]]
    options = BatchOptions(workers=2, pipeline=PipelineOptions(output_kind="labels", warmup=0))
    report = run_batch(good, tiny_onnx, tmp_path, options)
    assert report["done"] == 2
    if hasattr(os, "sched_getaffinity"):  # not pinned by default: the actors run on every CPU Ray's node has
        assert all(entry["cpus"] == sorted(os.sched_getaffinity(0)) for entry in report["sources"])
    folder = tmp_path / "north_labels"
    assert sorted(p.name for p in folder.iterdir()) == [OUTPUT_MARKER] + [f"frame_{i:06d}_trainIds.png"
                                                                          for i in range(FRAMES)]

    (folder / "frame_000003_trainIds.png").unlink()  # damaged after the run: no longer complete
    report = run_batch(good, tiny_onnx, tmp_path, options)
    assert (report["done"], report["skipped"]) == (1, 1)
    assert report["workers"] == 1  # one source to do: one actor, and the report says so
    assert len(list(folder.glob("*.png"))) == FRAMES


@pytest.mark.slow
def test_a_checkpoint_runs_at_the_size_it_records_in_a_batch_too(local_ray, sources, tiny_checkpoint, tmp_path,
                                                                 capsys):
    """No --size: the batch runs a .pth at the size it was validated at, as the single path does (one rule)."""
    model = checkpoint_validated_at(tiny_checkpoint, tmp_path / "small.pth", (32, 64))
    out = tmp_path / "out"
    rc, stdout, stderr = _cli(sources["north"], sources["south"], "--model", model, "--output-dir", out,
                              "--max-frames", "1", "--warmup", "0", capsys=capsys)
    assert rc == 0, stderr
    assert "Size: 32x64 (the size it was validated at" in stdout
    for name in ("north", "south"):
        marker = json.loads((out / f"{name}_seg.mp4.json").read_text())
        assert marker["report"]["input_size"] == [32, 64] and marker["settings"]["runner"] == {"size": [32, 64]}


def test_a_truncated_source_is_damaged_kept_and_reported_again_on_a_rerun(local_ray, sources, tiny_onnx, tmp_path,
                                                                          capsys):
    """30 frames listed, 1 decodes: its output keeps that frame, its line, the summary and the report say
    "damaged" with the reason, and the command exits 2; the rerun skips it from its done-marker and says it again
    (it was "done", exit 0, and skipped silently)."""
    cut = write_truncated_video(tmp_path / "cut.mp4")
    out, report_path = tmp_path / "out", tmp_path / "report.json"
    note = "29 of 30 listed frames could not be decoded (damaged file?)"
    for run in ("first", "rerun"):
        rc, stdout, stderr = _cli(cut, sources["north"], "--model", tiny_onnx, "--output-dir", out, "--warmup", "0",
                                  "--report", report_path, capsys=capsys)
        assert rc == 2, (run, stderr)
        assert stderr.strip().splitlines()[-1] == (
            "lrnnet-infer: error: 1 of 2 sources are damaged (their outputs keep the frames that decoded) (listed "
            "above); a rerun skips them and says so again"), (run, stderr)
        assert f"Damaged    {cut}: {note}" in stdout and "1 damaged" in stdout, (run, stdout)
        report = json.loads(report_path.read_text())
        entry = report["sources"][0]
        assert (entry["status"], entry["error"], entry["frames"]) == ("damaged", note, 1), (run, entry)
        assert report["damaged"] == 1 and report["failed"] == 0
        assert (report["done"], report["skipped"]) == ((1, 0) if run == "first" else (0, 1)), (run, report)
        assert len(read_video(out / "cut_seg.mp4")) == 1
        # Its line as it finishes (a log line here: no terminal); on the rerun it is not segmented again.
        finished = [line for line in stderr.splitlines() if line.startswith(f"damaged {cut}: {note}; 1 frames")]
        assert len(finished) == (run == "first"), (run, stderr)
    assert entry.get("skipped") is True


def test_a_trimmed_source_is_done_not_damaged(local_ray, tiny_onnx, tmp_path, capsys):
    """An MP4 whose edit list hides its first 5 of 30 frames: 25 shown, none lost (the batch reads through a
    counting wrapper, which must see the frames its source counted hidden)."""
    trimmed = write_trimmed_video(tmp_path / "trimmed.mp4")
    out, report_path = tmp_path / "out", tmp_path / "report.json"
    rc, _, stderr = _cli(trimmed, "--model", tiny_onnx, "--output-dir", out, "--workers", "1", "--warmup", "0",
                         "--report", report_path, capsys=capsys)
    assert rc == 0, stderr
    entry = json.loads(report_path.read_text())["sources"][0]
    assert (entry["status"], entry["error"], entry["frames"]) == ("done", None, 25), entry
    assert len(read_video(out / "trimmed_seg.mp4")) == 25


def test_list_file_with_comments_and_relative_paths(tmp_path):
    (tmp_path / "clips").mkdir()
    listing = tmp_path / "clips" / "sources.txt"
    listing.write_text("# dashcam, day 1\nnorth.mp4\n\n  /data/south.mp4  # absolute\n")
    assert read_sources([listing, "east.mp4"]) == [str(tmp_path / "clips" / "north.mp4"), "/data/south.mp4",
                                                  "east.mp4"]


def test_a_list_saved_with_a_byte_order_mark_names_its_first_source(tmp_path):
    listing = _write(tmp_path / "sources.txt", "north.mp4\nsouth.mp4\n".encode("utf-8-sig"))
    assert read_sources([listing]) == [str(tmp_path / "north.mp4"), str(tmp_path / "south.mp4")]


def test_list_entries_urls_hashes_and_lists_of_lists(tmp_path):
    """A URL stays a URL (plan_jobs refuses it as a stream, not as a missing file); `#` inside a name is the name;
    a list naming a list (itself included) is refused."""
    listing = _write(tmp_path / "sources.txt", "rtsp://camera/x\nclip#1.mp4\nnorth.mp4 #  the north road\n")
    assert read_sources([listing]) == ["rtsp://camera/x", str(tmp_path / "clip#1.mp4"), str(tmp_path / "north.mp4")]
    with pytest.raises(InputError, match="camera or stream"):
        plan_jobs(read_sources([listing]), tmp_path / "out", "overlay")
    _write(listing, "north.mp4\nsources.txt\n")
    with pytest.raises(InputError, match="a list itself"):
        read_sources([listing])


def test_an_output_dir_inside_an_image_folder_source_is_refused(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for out in (frames, frames / "segmented"):
        with pytest.raises(InputError, match="inside the image folder"):
            plan_jobs([str(frames), "north.mp4"], out, "labels")


def test_an_output_of_another_source_is_refused_not_replaced(first_run, sources, tiny_onnx, tmp_path, capsys):
    """a/north.mp4 done into a folder, then b/north.mp4 into the same folder: refused before anything runs, and
    the first output is untouched."""
    _, _, _, out, _ = first_run
    before = _mtimes(out)
    other = _copy(sources["north"], tmp_path / "b" / "north.mp4")
    rc, _, stderr = _cli(other, sources["south"], "--model", tiny_onnx, "--output-dir", out, capsys=capsys)
    assert rc == 2 and "is the output of" in stderr.strip().splitlines()[-1], stderr
    assert _mtimes(out) == before


@pytest.mark.parametrize("target", ["a source", "the model", "an output", "a done-marker"])
def test_a_report_that_would_overwrite_a_file_of_the_job_is_refused(target, sources, tiny_onnx, tmp_path):
    out = tmp_path / "out"
    two = [_copy(sources["north"], tmp_path / "north.mp4"), _copy(sources["south"], tmp_path / "south.mp4")]
    model = _copy(Path(tiny_onnx), tmp_path / "m.onnx")
    report = {"a source": two[0], "the model": model, "an output": out / "north_seg.mp4",
              "a done-marker": out / "south_seg.mp4.json"}[target]
    before = {path: path.read_bytes() for path in [*two, model]}
    rc, _, stderr = _cli(*two, "--model", model, "--output-dir", out, "--report", report)
    assert rc == 2 and stderr.strip().splitlines()[-1].startswith("lrnnet-infer: error:"), stderr
    assert {path: path.read_bytes() for path in before} == before
    assert not out.exists()


def test_a_report_onto_a_list_file_of_sources_is_refused(sources, tiny_onnx, tmp_path):
    """The list file is an input too: a report (or any other output of the job) onto it is refused before Ray starts."""
    listing = _write(tmp_path / "clips.txt", f"{sources['north']}\n{sources['south']}\n")
    for also in (listing, tmp_path / "." / "clips.txt"):
        with pytest.raises(InputError, match="is the input"):
            run_batch([listing], tiny_onnx, tmp_path / "out", also_writes=[also])
    assert listing.read_text() == f"{sources['north']}\n{sources['south']}\n" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("inside", ["a source", "the model", "a list file", "someone else's file"])
def test_a_labels_folder_of_the_job_never_replaces_inputs_or_foreign_files(inside, sources, tiny_onnx, tmp_path):
    """Each labels folder is replaced as a whole when its source is redone: one that holds an input of the job, or
    files lrnnet did not write, is refused before Ray starts, and everything in it is left as it was."""
    out = tmp_path / "out"
    folder = out / "north_labels"
    folder.mkdir(parents=True)
    north, model = sources["north"], Path(tiny_onnx)
    specs: list[Path] = []
    if inside == "a source":
        north = _copy(north, folder / "north.mp4")
    elif inside == "the model":
        model = _copy(model, folder / "m.onnx")
    elif inside == "a list file":
        specs = [_write(folder / "more.txt", f"{sources['east']}\n")]
    else:
        _write(folder / "notes.txt", "mine")
    before = {p: p.read_bytes() for p in folder.iterdir()}
    options = BatchOptions(workers=1, pipeline=PipelineOptions(output_kind="labels", warmup=0))
    expected = "holds files lrnnet did not write" if inside == "someone else's file" else "holds the input"
    with pytest.raises(InputError, match=expected):
        run_batch([north, sources["south"], *specs], model, out, options)
    assert {p: p.read_bytes() for p in folder.iterdir()} == before and sorted(out.iterdir()) == [folder]


def test_an_output_dir_that_cannot_be_made_is_one_line(sources, tiny_onnx, tmp_path):
    blocker = _write(tmp_path / "file", "not a folder")
    with pytest.raises(InputError, match="cannot create --output-dir"):
        make_output_dir(blocker / "out")


def test_two_sources_with_one_stem_are_refused(tmp_path):
    with pytest.raises(Exception, match="would both write"):
        plan_jobs(["a/street.mp4", "b/street.mp4"], tmp_path / "out", "overlay")


def test_a_source_given_twice_is_named_as_such(tmp_path):
    with pytest.raises(Exception, match="street.mp4 is given twice"):
        plan_jobs(["street.mp4", "./street.mp4"], tmp_path / "out", "overlay")


def test_an_output_that_is_another_source_is_refused(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Exception, match="would overwrite the source"):
        plan_jobs([str(out / "street.mp4"), str(out / "street_seg.mp4")], out, "overlay")


@pytest.mark.parametrize("case", ["no sources", "empty list", "output-dir parent", "same stem", "workers 0",
                                  "workers past the bound", "local workers past the CPUs", "camera", "-o with many", "corrupt model", "backend for another model"])
def test_bad_input_is_exit_2_and_no_output(case, sources, tiny_onnx, tmp_path):
    out = tmp_path / "out"
    two = [sources["north"], sources["south"]]
    args = {
        "no sources": ["--model", tiny_onnx, "--output-dir", out],
        "empty list": [_write(tmp_path / "empty.txt", "# nothing yet\n"), "--model", tiny_onnx, "--output-dir", out],
        "output-dir parent": [*two, "--model", tiny_onnx, "--output-dir", tmp_path / "missing" / "out"],
        "same stem": [sources["north"], _copy(sources["north"], tmp_path / "b" / "north.mp4"), "--model", tiny_onnx,
                      "--output-dir", out],
        "workers 0": [*two, "--model", tiny_onnx, "--output-dir", out, "--workers", "0"],
        "workers past the bound": [*two, "--model", tiny_onnx, "--output-dir", out, "--workers", "100000"],
        # thousands of local actor processes, each holding a model, would exhaust the machine first
        "local workers past the CPUs": [*[_copy(sources["north"], tmp_path / f"{i}" / f"v{i}.mp4")
                                          for i in range(4 * usable_cpus() + 1)],
                                        "--model", tiny_onnx, "--output-dir", out, "--workers", str(4 * usable_cpus() + 1)],
        "camera": [sources["north"], "0", "--model", tiny_onnx, "--output-dir", out],
        "-o with many": [*two, "--model", tiny_onnx, "-o", tmp_path / "x.mp4", "--output-dir", out],
        "corrupt model": [*two, "--model", _write(tmp_path / "cut.onnx", Path(tiny_onnx).read_bytes()[:5000]),
                          "--output-dir", out],
        "backend for another model": [*two, "--model", tiny_onnx, "--backend", "torch", "--output-dir", out],
    }[case]
    rc, _, stderr = _cli(*args)
    assert rc == 2, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("lrnnet-infer: error:") and "Traceback" not in stderr
    assert not out.exists() and not (tmp_path / "missing").exists() and not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("case", ["read-only output-dir", "corrupt checkpoint", "size off the stride"])
def test_a_bad_output_dir_model_or_size_fails_before_ray_starts(case, sources, tiny_checkpoint, tmp_path):
    """A real process: one line and exit 2 before a Ray is started (no Ray temp folder), nothing created; these
    were found by every source on Ray, each failing with the same reason."""
    from disk_helpers import mounted

    ray_temp = Path(f"/tmp/lrnnet_pre_{os.getpid()}")  # the job's Ray would make it (short: Ray's sockets)
    out, model, extra = tmp_path / "out", tiny_checkpoint, ["--size", "64x128"]
    if case == "read-only output-dir":
        out.mkdir()
        stack = mounted(["-t", "tmpfs", "-o", "size=1m,ro", "tmpfs"], out)
    else:
        stack = contextlib.nullcontext(out)
        if case == "corrupt checkpoint":
            model = _write(tmp_path / "cut.pth", Path(tiny_checkpoint).read_bytes()[:5000])
        else:
            extra = ["--size", "100x100"]
    with stack:
        result = subprocess.run([sys.executable, "-m", "lrnnet.cli.infer", str(sources["north"]), str(sources["south"]),
                                 "--model", str(model), *extra, "--output-dir", str(out), "--no-progress"],
                                env={**os.environ, "RAY_TMPDIR": str(ray_temp)}, check=False, capture_output=True,
                                text=True, timeout=120)
        try:
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()  # info lines (the thread plan), then the one error
            assert lines[-1].startswith("lrnnet-infer: error: ") and "Traceback" not in result.stderr
            assert not [line for line in lines[:-1] if "error" in line or line.startswith("failed")], result.stderr
            assert not ray_temp.exists(), "a Ray was started for bad input"
            assert (list(out.iterdir()) == []) if case == "read-only output-dir" else not out.exists()
        finally:
            shutil.rmtree(ray_temp, ignore_errors=True)


def test_unreachable_ray_address_fails_within_seconds(sources, tiny_onnx, tmp_path):
    """A real process (no Ray in it yet) against a closed port: one line, exit 2, well before ray.init would."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "lrnnet.cli.infer", str(sources["north"]), str(sources["south"]),
                             "--model", str(tiny_onnx), "--output-dir", str(out), "--ray-address",
                             f"127.0.0.1:{port}", "--no-progress"], check=False, capture_output=True, text=True,
                            timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr
    assert elapsed < 15, elapsed
    assert result.stderr.strip().splitlines()[-1].startswith("lrnnet-infer: error: cannot reach the Ray cluster")
    assert not out.exists()


def test_the_stderr_filter_drops_exactly_the_known_ray_lines(tmp_path):
    """The three Ray lines lrnnet says better (or that ask nothing of a user) go; every other byte passes in order."""
    import threading

    from lrnnet.runtime.batch import _forward_stderr

    known = [(b"[2026-12-05 07:26:21,958 E 14848 14848] core_worker.cc:2465: Actor with class name: 'MapWorker(X)' and "
             b"ID: '38' has constructor arguments in the object store and max_restarts > 0. If the arguments in the "
             b"object store go out of scope ... https://github.com/ray-project/ray/issues/53727\n"),
             (b"\x1b[33m(raylet)\x1b[0m A worker died or was killed while executing a task by an unexpected system "
             b"error. To troubleshoot the problem, check the logs for the dead worker. Worker PID: 22529\n"),
             (b"[2026-12-05 08:11:35,374 W 7082 7103] gcs_client.cc:210: Failed to get cluster ID from GCS server: "
             b"Unauthenticated: RPC error: InvalidAuthToken: Authentication token is missing or incorrect\n")]
    kept = [b"lrnnet-infer: error: the Ray cluster at 127.0.0.1:6390 uses token authentication\n",
            b"\x1b[33m(raylet)\x1b[0m Task was killed due to the node running low on memory.\n", b"a bar \r"]
    read_end, write_end = os.pipe()
    sink = tmp_path / "stderr"
    with open(sink, "wb") as target:
        forwarder = threading.Thread(target=_forward_stderr, args=(read_end, target.fileno()))
        forwarder.start()
        for line in (kept[0], known[0], kept[1], known[1], known[2], kept[2]):
            os.write(write_end, line)
        os.close(write_end)
        forwarder.join(timeout=10)
    assert sink.read_bytes() == b"".join(kept)


def test_a_batch_run_logs_only_its_own_lines(sources, tiny_onnx, tmp_path):
    """A real process (Ray's C++ core worker writes to fd 2): every batch run logged Ray's core_worker.cc:2465
    line about constructor arguments in the object store (ray issue #53727); now only lrnnet's lines, each
    whole and in order."""
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "lrnnet.cli.infer", str(sources["north"]), str(sources["south"]),
                             "--model", str(tiny_onnx), "--output-dir", str(out), "--no-progress"],
                            env={**os.environ, "RAY_TMPDIR": f"/tmp/lrnnet_log_{os.getpid()}"}, check=False,
                            capture_output=True, text=True, timeout=180)
    shutil.rmtree(f"/tmp/lrnnet_log_{os.getpid()}", ignore_errors=True)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "core_worker" not in result.stderr and "53727" not in result.stderr, result.stderr
    assert lines[0].startswith("Ray local ("), lines
    assert sorted(line.split(":")[0] for line in lines[1:]) == [f"done    {sources[n]}" for n in ("north", "south")]


def test_one_source_keeps_the_single_process_path(sources, tiny_onnx, tmp_path):
    """One source and --output-dir: no Ray, the single-video report, the name a batch would give it."""
    rc, stdout, stderr = _cli(sources["north"], "--model", tiny_onnx, "--output-dir", tmp_path, "--max-frames", "2")
    assert rc == 0, stderr
    assert "Model-only FPS" in stdout and "Sources" not in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["north_seg.mp4"]


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


def _segment_workers(raylet_pid: int) -> list[int]:
    """PIDs of this test's Ray actors that hold a runner (children of our raylet named after the worker class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == raylet_pid and "_SegmentWorker" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor processes through /proc (Linux)")
def test_a_source_that_kills_its_worker_fails_alone_after_a_second_try(local_ray, sources, tiny_onnx, tmp_path):
    """Whenever a worker writes one of the long videos, the test SIGKILLs it (a source that crashes its worker,
    as a native crash or the OOM killer would): each long video is tried twice and fails with the reason; the
    short sources, which waited on the same actors and died with them on the first try, finish on the actors Ray
    restarts; the job ends (no retry loop) and does not fail."""
    import signal
    import threading

    from lrnnet._io import TEMP_MARK

    long_videos = [write_synthetic_video(tmp_path / f"long_{i}.mp4", size=VIDEO_SIZE, frames=400, seed=i)
                   for i in range(2)]
    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    out = tmp_path / "out"
    outcome: dict = {}
    job = threading.Thread(target=lambda: outcome.update(report=run_batch(
        [*long_videos, sources["north"], sources["south"]], tiny_onnx, out, BatchOptions(workers=2, pin_cpus=True))))
    job.start()
    deadline = time.monotonic() + 240
    killed: set[int] = set()
    while job.is_alive() and time.monotonic() < deadline:
        workers = set(_segment_workers(raylet))
        # The pid in a temporary's name is its writer's (lrnnet._io): kill exactly the workers writing a long video.
        writing_long = {int(p.name.split(TEMP_MARK)[1].split("-")[0]) for p in (out.iterdir() if out.is_dir() else [])
                        if p.name.startswith(".long_") and TEMP_MARK in p.name}
        for pid in (writing_long & workers) - killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.05)
    job.join(timeout=10)
    assert not job.is_alive(), "the job did not end: a source that kills its worker must not be retried in a loop"
    by_name = {Path(e["source"]).stem: e for e in outcome["report"]["sources"]}
    for name in ("long_0", "long_1"):
        assert by_name[name]["status"] == "failed" and by_name[name]["attempts"] == 2
        assert "worker process died" in by_name[name]["error"] and "both tries" in by_name[name]["error"]
        assert not (out / f"{name}_seg.mp4").exists()
    for name in ("north", "south"):
        # Each usually waits on an actor that holds a long video (two sources in flight per actor; the longest
        # first), is lost with it and finishes on the second try; on a busy machine an actor may end a short one
        # before its long one is killed (seen in CI): done either way, every frame there.
        assert by_name[name]["status"] == "done" and by_name[name]["attempts"] in (1, 2), by_name[name]
        assert len(read_video(out / f"{name}_seg.mp4")) == by_name[name]["frames"] == FRAMES
        if len(os.sched_getaffinity(0)) >= 2:  # the killed actors' CPU claims died with them: pinned again
            assert len(by_name[name]["cpus"]) == 1, by_name[name]
    assert outcome["report"]["failed"] == 2 and outcome["report"]["done"] == 2


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _kill_cluster(temp_dir: Path) -> None:
    """SIGKILL the processes of the cluster this test started (found by its own temp dir), never `ray stop`,
    which would stop every Ray on the machine."""
    import signal

    ours, parents = [], {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if str(temp_dir) in cmdline:
            ours.append(int(entry.name))
    children = [pid for pid, parent in parents.items() if parent in ours]
    for pid in ours + children:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="stops its cluster through /proc (Linux)")
def test_the_same_job_runs_on_a_cluster_by_address(sources, tiny_onnx, tmp_path):
    """`ray start --head`, then lrnnet-infer --ray-address in another process: the job runs there."""
    temp_dir = Path(f"/tmp/lrnnet_ray_{os.getpid()}")  # Ray's socket paths must stay short
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_cli = Path(sys.executable).with_name("ray")
    try:
        subprocess.run([str(ray_cli), "start", "--head", "--port", str(port), "--num-cpus", "2", "--temp-dir",
                        str(temp_dir), "--include-dashboard", "false", "--disable-usage-stats"], env=env,
                       check=True, capture_output=True, timeout=120)
        out, report = tmp_path / "out", tmp_path / "report.json"
        result = subprocess.run([sys.executable, "-m", "lrnnet.cli.infer", str(sources["north"]), str(sources["east"]),
                                 "--model", str(tiny_onnx), "--output-dir", str(out), "--ray-address",
                                 f"127.0.0.1:{port}", "--report", str(report), "--no-progress"], env=env,
                                check=False, capture_output=True, text=True, timeout=300)
    finally:
        _kill_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["ray_address"] == f"127.0.0.1:{port}" and data["done"] == 2
    for name in ("north", "east"):
        assert len(read_video(out / f"{name}_seg.mp4")) == FRAMES


def test_sources_are_handed_out_longest_first():
    """Longest first (unknown lengths first of all), so that a job does not end on one worker finishing a long
    source while the others idle; every source once, with absolute paths for workers elsewhere."""
    from lrnnet.runtime.batch import _rows

    jobs = [SourceJob(i, f"v{i}.mp4", Path(f"out/v{i}_seg.mp4"), frames) for i, frames in enumerate([10, None, 300, 40])]
    rows = _rows(jobs, {job.index: job.expected_frames for job in jobs})
    assert [row["index"] for row in rows] == [1, 2, 3, 0]
    assert all(Path(row["path"]).is_absolute() and Path(row["output"]).is_absolute() for row in rows)


def test_a_worker_loads_the_checked_model_without_importing_onnx(tiny_onnx, tmp_path):
    """The driver reads the metadata and checks the weights digest once; a worker given them loads the same bytes
    (same SHA-256) without `import onnx`, which costs each worker's start 0.5 s (ml_dtypes). In a fresh process,
    as a Ray worker is."""
    from lrnnet.export.metadata import read_model_info

    info = read_model_info(tiny_onnx)
    script = (
        "import pickle, sys\n"
        "from lrnnet.runtime.batch import _SegmentWorker\n"
        "from lrnnet.runtime.video import PipelineOptions\n"
        "model, sha, info = pickle.loads(sys.stdin.buffer.read())\n"
        "worker = _SegmentWorker(model, sha, 'onnxruntime', 'cpu', {'threads': 1, 'info': info}, 1, PipelineOptions(), {},\n"
        "                        None)\n"
        "assert worker._load_error is None, worker._load_error\n"
        "print('onnx imported' if 'onnx' in sys.modules else 'onnx not imported')\n")
    import pickle

    result = subprocess.run([sys.executable, "-c", script], input=pickle.dumps((str(tiny_onnx), file_sha256(tiny_onnx),
                            info)), capture_output=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "onnx not imported"


def test_a_worker_refuses_a_model_changed_after_the_check(tiny_onnx, tmp_path):
    """The bytes a worker loads must be those the driver checked and the done-markers name: every source of a
    worker that finds another SHA-256 fails with the reason, and nothing is written."""
    from lrnnet.export.metadata import read_model_info
    from lrnnet.runtime.batch import _SegmentWorker

    worker = _SegmentWorker(str(tiny_onnx), "0" * 64, "onnxruntime", "cpu",
                            {"threads": 1, "info": read_model_info(tiny_onnx)}, 1, PipelineOptions(), {}, None)
    out = tmp_path / "a_seg.mp4"
    result = json.loads(worker({"index": np.array([0]), "source": np.array(["a.mp4"]), "path": np.array(["a.mp4"]),
                                "output": np.array([str(out)])})["result"][0])
    assert result["status"] == "failed" and "not the file the job checked" in result["error"]
    assert not out.exists() and not tmp_path.joinpath("a_seg.mp4.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job's Ray processes through /proc (Linux)")
@pytest.mark.parametrize(("signame", "status", "line", "when"), [
    ("SIGTERM", 143, "terminated by SIGTERM", "writing"), ("SIGINT", 130, "interrupted", "writing"),
    ("SIGTERM", 143, "terminated by SIGTERM", "starting Ray"), ("SIGINT", 130, "interrupted", "starting Ray")])
def test_a_stopped_job_unwinds_with_one_line_and_leaves_nothing(signame, status, line, when, long_videos, tiny_onnx,
                                                               tmp_path):
    """SIGTERM or Ctrl-C while the workers write, or while ray.init starts Ray: one line and the signal's exit
    status (Ray's own SIGTERM handler, a stack dump and exit 15, does not take over), no temporary left, the
    folder gone when nothing was committed in it, and no process of the job's Ray left running (nor a new Ray
    started after it)."""
    import signal

    from lrnnet._io import TEMP_MARK

    ray_temp = Path(f"/tmp/lrnnet_sig_{os.getpid()}")  # the job's Ray, told apart by its temp dir (short: sockets)
    out = tmp_path / "out"
    env = {**os.environ, "RAY_TMPDIR": str(ray_temp), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen([sys.executable, "-m", "lrnnet.cli.infer", *map(str, long_videos), "--model", str(tiny_onnx),
                            "--output-dir", str(out), "--no-progress"], env=env, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120

        def reached() -> bool:
            if when == "starting Ray":
                return ray_temp.exists()
            return out.is_dir() and any(TEMP_MARK in p.name for p in out.iterdir())

        while time.monotonic() < deadline and job.poll() is None and not reached():
            time.sleep(0.02)
        assert job.poll() is None, "the job ended before a worker wrote"
        job.send_signal(getattr(signal, signame))
        _, stderr = job.communicate(timeout=60)
        assert job.returncode == status, stderr
        assert stderr.strip().splitlines()[-1].startswith(f"lrnnet-infer: error: {line}") and "Traceback" not in stderr
        assert "SIGTERM received" not in stderr
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert not [name for name in left if TEMP_MARK in name], left
        assert all(name.endswith(".json") or f"{name}.json" in left for name in left), left  # committed, with markers
        assert left or not out.exists()
        time.sleep(1)
        assert _processes_of(ray_temp) == [], "processes of the job's Ray are still running"
    finally:
        _end_job(job, ray_temp)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job's Ray processes through /proc (Linux)")
def test_a_job_stopped_with_its_process_group_says_what_it_kept(long_videos, sources, tiny_onnx, tmp_path):
    """SIGTERM to the command's whole process group (a supervisor, `kill -- -PGID`) once a short source is
    committed while a long one runs: exit 143 and one line counting the outputs really kept, counted after the
    workers ended. Ray's processes shared the group: the GCS and raylet died with it and the driver's core worker
    ended the process (exit 1, a Ray log line, no account), or the count was taken while workers still wrote."""
    import re
    import signal

    ray_temp = Path(f"/tmp/lrnnet_grp_{os.getpid()}")
    out = tmp_path / "out"
    env = {**os.environ, "RAY_TMPDIR": str(ray_temp), "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen([sys.executable, "-m", "lrnnet.cli.infer", str(long_videos[0]), str(sources["north"]),
                            str(sources["south"]), "--model", str(tiny_onnx), "--output-dir", str(out),
                            "--no-progress"], env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and job.poll() is None and not (
                out.is_dir() and any(p.name.endswith(".json") for p in out.iterdir())):
            time.sleep(0.02)
        assert job.poll() is None, "the job ended before a source was committed"
        os.killpg(job.pid, signal.SIGTERM)
        _, stderr = job.communicate(timeout=60)
        assert job.returncode == 143, stderr
        last = stderr.strip().splitlines()[-1]
        found = re.fullmatch(r"lrnnet-infer: error: terminated by SIGTERM; (\d) of 3 outputs are complete and kept; "
                             r"a rerun skips them and does the rest", last)
        assert found, stderr
        assert int(found[1]) == sum(p.name.endswith(".json") for p in out.iterdir()) >= 1, sorted(out.iterdir())
        assert "core_worker" not in stderr and "Traceback" not in stderr, stderr
        time.sleep(1)
        assert _processes_of(ray_temp) == [], "processes of the job's Ray are still running"
    finally:
        _end_job(job, ray_temp)


def _end_job(job: subprocess.Popen, ray_temp: Path) -> None:
    """Whatever the test saw: the job's process and its Ray's are gone, and so is its Ray folder."""
    if job.poll() is None:
        job.kill()
    _kill_cluster(ray_temp)
    shutil.rmtree(ray_temp, ignore_errors=True)


def _processes_of(temp_dir: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace") if entry.name.isdigit() else ""
        except OSError:
            continue
        if str(temp_dir) in cmdline:
            found.append(cmdline.replace("\0", " ")[:120])
    return found
