"""Many videos: aggregate frames/s of the Ray batch job with 1 and 2 workers and of a single-process loop.

    python benchmarks/bench_batch.py                      # 4 generated videos x 100 frames at 128x256, LRNNet at 256x512
    python benchmarks/bench_batch.py --videos 8 --frames 200 --rounds 5
    python benchmarks/bench_batch.py --pinned             # also the workers pinned to their CPUs (--pin-cpus)

Over the same generated street videos (lrnnet.data.synthetic), measured round-robin in one run:
  1. single process: one runner (ONNX Runtime on all cores), `run_video` over the sources one after another;
  2. Ray, 1 worker x 1 thread: `lrnnet.runtime.batch.run_batch`;
  3. Ray, 2 workers x 1 thread each.
"cores" is the CPU time the workers' threads (decode, infer, encode, FFmpeg's) used per second of
processing: what "1 worker x 1 thread" really takes of the machine. --pinned adds both Ray rows with each
worker pinned to its own CPU (batch.claim_cpus, `lrnnet-infer --pin-cpus`).
One local Ray (num_cpus = the usable cores) serves every round, so Ray's own start is not timed; the actors
start in every job and that is timed: "job" frames/s are frames / the job's wall time (what a user waits
for), "processing" frames/s are frames / first source started to last finished (what a long job tends to);
the difference, the actors' start-up (Ray Data's worker imports, the model load) and wind-down, is printed
too. A short job per configuration warms up first, untimed. Each figure is min / median / max over the
rounds; each ratio is taken within a round (the two configurations ran back to back) and given as min /
median / max over the rounds, so that a machine that slows down between rounds moves both sides.
Absolute figures are this machine's only.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lrnnet._threads import usable_cpus
from lrnnet.cli._common import parse_size
from lrnnet.data.synthetic import write_synthetic_video
from lrnnet.log import set_progress, setup_logging
from lrnnet.runtime import open_runner
from lrnnet.runtime.batch import BatchOptions, run_batch
from lrnnet.runtime.video import PipelineOptions, run_video

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import seeded_onnx  # the benchmarks folder is not a package


def single_process(model: Path, videos: list[Path], out: Path, options: PipelineOptions) -> dict[str, float]:
    """Frames/s over the whole loop (job and processing alike: the runner is opened inside the timing)."""
    start = time.perf_counter()
    frames = 0
    with open_runner(model) as runner:
        for video in videos:
            frames += run_video(runner, video, out / f"{video.stem}_seg.mp4", options)["frames"]
    fps = frames / (time.perf_counter() - start)
    return {"job": fps, "processing": fps}


def ray_job(model: Path, videos: list[Path], out: Path, options: PipelineOptions, workers: int,
            pin_cpus: bool = False) -> dict[str, float]:
    report = run_batch(videos, model, out, BatchOptions(workers=workers, threads=1, pipeline=options,
                                                        pin_cpus=pin_cpus))
    if report["done"] != len(videos):
        raise RuntimeError(f"{report['failed']} sources failed: {report['sources']}")
    pinned = {entry["worker"]: entry["cpus"] for entry in report["sources"]}
    return {"job": report["frames_per_s"], "processing": report["frames_per_s_processing"],
            "startup": report["wall_s"] - report["processing_s"],
            # CPU time of the workers' threads per second of processing: the cores they really used
            "cores": sum(entry["cpu_s"] for entry in report["sources"]) / report["processing_s"],
            "pinned": all(len(cpus) == 1 for cpus in pinned.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help=".onnx (default: a seeded LRNNet export)")
    parser.add_argument("--size", type=parse_size, default=(256, 512), help="export size of the default model")
    parser.add_argument("--video-size", type=parse_size, default=(128, 256), help="size of the generated videos")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=100, help="frames per video")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pinned", action="store_true", help="also time the Ray workers pinned to their CPUs")
    args = parser.parse_args(argv)
    setup_logging()
    logging.getLogger("lrnnet").setLevel(logging.WARNING)
    set_progress(False)

    import ray

    cores = usable_cpus()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=cores, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        model = args.model or seeded_onnx(work, args.size)
        videos = [write_synthetic_video(work / f"street_{i}.mp4", size=args.video_size, frames=args.frames, seed=i)
                  for i in range(args.videos)]
        options = PipelineOptions(warmup=2)
        configs: dict[str, Callable[[Path, list[Path], PipelineOptions], dict[str, float]]] = {
            f"single process ({cores} threads)": lambda out, vs, opts: single_process(model, vs, out, opts),
            ONE: lambda out, vs, opts: ray_job(model, vs, out, opts, 1),
            TWO: lambda out, vs, opts: ray_job(model, vs, out, opts, 2),
        }
        if args.pinned:
            configs[ONE + ", pinned"] = lambda out, vs, opts: ray_job(model, vs, out, opts, 1, pin_cpus=True)
            configs[TWO + ", pinned"] = lambda out, vs, opts: ray_job(model, vs, out, opts, 2, pin_cpus=True)
        # Warm-up, untimed: a short job per configuration (the first Ray Data job of a session starts its helpers).
        short = PipelineOptions(warmup=2, max_frames=10)
        for name, run in configs.items():
            run(_fresh(work / "out"), videos[:2], short)
        figures: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
        for _ in range(args.rounds):
            for name, run in configs.items():
                figures[name].append(run(_fresh(work / "out"), videos, options))
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.videos} videos x {args.frames} frames at {args.video_size[0]}x{args.video_size[1]}, model "
          f"{'seeded LRNNet ' + 'x'.join(map(str, args.size)) if args.model is None else args.model}, "
          f"{cores} usable CPUs, {args.rounds} rounds round-robin")
    print(f"{'frames/s (min / median / max)':<36}{'job':>20}{'processing':>20}{'start-up s':>12}{'cores':>7}")
    for name, samples in figures.items():
        job = sorted(s["job"] for s in samples)
        proc = sorted(s["processing"] for s in samples)
        extra = ""
        if "startup" in samples[0]:
            extra = (f"{statistics.median(s['startup'] for s in samples):>12.1f}"
                     f"{statistics.median(s['cores'] for s in samples):>7.2f}")
            if name.endswith(", pinned") and not all(s["pinned"] for s in samples):
                extra += "  (not pinned: too few free CPUs)"
        print(f"{name:<36}{_triple(job):>20}{_triple(proc):>20}{extra}")
    single = next(k for k in figures if k.startswith("single"))
    print("ratios of the same round (min / median / max over rounds):")
    _ratio("2 workers / 1 worker", figures[TWO], figures[ONE], "  (target >= 1.7x)")
    _ratio("2 workers / single process", figures[TWO], figures[single])
    if args.pinned:
        _ratio("2 workers / 1 worker, pinned", figures[TWO + ", pinned"], figures[ONE + ", pinned"])
        _ratio("1 worker pinned / unpinned", figures[ONE + ", pinned"], figures[ONE])
        _ratio("2 workers pinned / unpinned", figures[TWO + ", pinned"], figures[TWO])
    return 0


ONE, TWO = "Ray, 1 worker x 1 thread", "Ray, 2 workers x 1 thread"


def _fresh(out: Path) -> Path:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    return out


def _ratio(label: str, a: list[dict[str, float]], b: list[dict[str, float]], note: str = "") -> None:
    """Round by round (both measured minutes apart, not an hour), then min / median / max."""
    def spread(key: str) -> str:
        ratios = sorted(x[key] / y[key] for x, y in zip(a, b))
        return f"{ratios[0]:.2f} / {statistics.median(ratios):.2f} / {ratios[-1]:.2f}x"

    print(f"  {label:<30} job {spread('job')}, processing {spread('processing')}{note}")


def _triple(values: list[float]) -> str:
    return f"{values[0]:.1f} / {statistics.median(values):.1f} / {values[-1]:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
