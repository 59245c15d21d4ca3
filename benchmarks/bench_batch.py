"""Many videos: aggregate frames/s of the Ray batch job with 1 and 2 workers and of a single-process loop.

    python benchmarks/bench_batch.py                      # 4 generated videos x 40 frames at 128x256, LRNNet at 256x512
    python benchmarks/bench_batch.py --videos 8 --frames 120 --rounds 5

Over the same generated street videos (lrnnet.data.synthetic), measured round-robin in one run:
  1. single process: one runner (ONNX Runtime on all cores), `run_video` over the sources one after another;
  2. Ray, 1 worker x 1 thread: `lrnnet.runtime.batch.run_batch`;
  3. Ray, 2 workers x 1 thread each.
One local Ray (num_cpus = the usable cores) serves every round, so Ray's own start is not timed; the actors
start in every round and that is timed: "job" frames/s are frames / the job's wall time (what a user
waits for), "processing" frames/s are frames / first source started to last finished (actor start-up
excluded, what a long job tends to). Each figure is min / median / max over the rounds, and the ratios
are of medians. Absolute figures are this machine's only.
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


def single_process(model: Path, videos: list[Path], out: Path, options: PipelineOptions) -> tuple[float, float]:
    """(frames/s over the whole loop, the same) -- one figure, given twice to line up with the Ray rows."""
    start = time.perf_counter()
    frames = 0
    with open_runner(model) as runner:
        for video in videos:
            frames += run_video(runner, video, out / f"{video.stem}_seg.mp4", options)["frames"]
    fps = frames / (time.perf_counter() - start)
    return fps, fps


def ray_job(model: Path, videos: list[Path], out: Path, options: PipelineOptions, workers: int) -> tuple[float, float]:
    report = run_batch(videos, model, out, BatchOptions(workers=workers, threads=1, pipeline=options))
    if report["done"] != len(videos):
        raise RuntimeError(f"{report['failed']} sources failed: {report['sources']}")
    return report["frames_per_s"], report["frames_per_s_processing"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help=".onnx (default: a seeded LRNNet export)")
    parser.add_argument("--size", type=parse_size, default=(256, 512), help="export size of the default model")
    parser.add_argument("--video-size", type=parse_size, default=(128, 256), help="size of the generated videos")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=40, help="frames per video")
    parser.add_argument("--rounds", type=int, default=3)
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
        configs = {
            f"single process ({cores} threads)": lambda out: single_process(model, videos, out, options),
            "Ray, 1 worker x 1 thread": lambda out: ray_job(model, videos, out, options, 1),
            "Ray, 2 workers x 1 thread": lambda out: ray_job(model, videos, out, options, 2),
        }
        figures: dict[str, list[tuple[float, float]]] = {name: [] for name in configs}
        for round_index in range(args.rounds + 1):  # round 0 warms the page cache and the imports, untimed
            for name, run in configs.items():
                out = work / "out"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                result = run(out)
                if round_index:
                    figures[name].append(result)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    print(f"{args.videos} videos x {args.frames} frames at {args.video_size[0]}x{args.video_size[1]}, model "
          f"{'seeded LRNNet ' + 'x'.join(map(str, args.size)) if args.model is None else args.model}, "
          f"{cores} usable CPUs, {args.rounds} rounds round-robin")
    print(f"{'frames/s (min / median / max)':<30}{'job':>24}{'processing':>26}")
    medians: dict[str, tuple[float, float]] = {}
    for name, samples in figures.items():
        job = sorted(s[0] for s in samples)
        proc = sorted(s[1] for s in samples)
        medians[name] = (statistics.median(job), statistics.median(proc))
        print(f"{name:<30}{_triple(job):>24}{_triple(proc):>26}")
    one, two = medians["Ray, 1 worker x 1 thread"], medians["Ray, 2 workers x 1 thread"]
    single = next(v for k, v in medians.items() if k.startswith("single"))
    print(f"2 workers / 1 worker: job {two[0] / one[0]:.2f}x, processing {two[1] / one[1]:.2f}x (target >= 1.7x)")
    print(f"2 workers / single process: job {two[0] / single[0]:.2f}x, processing {two[1] / single[1]:.2f}x")
    return 0


def _triple(values: list[float]) -> str:
    return f"{values[0]:.1f} / {statistics.median(values):.1f} / {values[-1]:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
