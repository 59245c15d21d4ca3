"""Video pipeline end-to-end FPS against model-only FPS, measured side by side in one run.

    python benchmarks/bench_pipeline.py                       # seeded LRNNet exported to ONNX at 256x512, CPU
    python benchmarks/bench_pipeline.py --model lrnnet_fp16.engine --frames 300   # a real engine on a GPU

On a generated street video (lrnnet.data.synthetic) at the model's input size, three figures:
  1. model-only: `runner.infer` on one preallocated batch (host in, host out), warm-up then timed;
  2. serial loop: decode -> preprocess -> infer -> argmax -> overlay -> encode, one frame at a time, one thread;
  3. pipeline: `lrnnet.runtime.video.run_video` (decode / infer / encode threads, bounded queues).
It prints each FPS and the ratios pipeline/model-only (how much of the model's speed reaches the
output video) and pipeline/serial (what the threads buy). Absolute figures are this machine's only.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from lrnnet.cli._common import parse_size
from lrnnet.data.preprocess import overlay
from lrnnet.data.synthetic import write_synthetic_video
from lrnnet.log import setup_logging
from lrnnet.runtime import open_runner, summarize_latency
from lrnnet.runtime.sources import open_source
from lrnnet.runtime.video import PipelineOptions, run_video


def seeded_onnx(folder: Path, size: tuple[int, int]) -> Path:
    """A seeded, randomly initialised LRNNet exported at `size` (speed does not depend on the weights)."""
    import torch

    from lrnnet.export import ExportOptions, export_onnx
    from lrnnet.models import LRNNet

    torch.manual_seed(0)
    path = folder / "lrnnet.onnx"
    export_onnx(LRNNet().eval(), path, ExportOptions(height=size[0], width=size[1], verify=False))
    return path


def model_only_fps(runner, warmup: int, iters: int) -> dict:
    batch = runner.prepare([np.random.default_rng(0).integers(0, 256, (*runner.info.input_size, 3), np.uint8)])
    for _ in range(warmup):
        runner.infer(batch)
    samples = []
    for _ in range(iters):
        runner.infer(batch)
        samples.append(runner.last_infer_ms)
    return summarize_latency(samples)


def serial_fps(runner, video: Path, out: Path, max_frames: int) -> float:
    """The same work as the pipeline, one frame at a time in one thread."""
    palette = np.asarray(runner.info.palette, np.uint8)
    source = open_source(video)
    height, width = source.size
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*"mp4v"), source.fps, (width, height))
    frames = 0
    start = time.perf_counter()
    try:
        for frame in source:
            if frames >= max_frames:
                break
            if frame.image is None:
                continue
            labels = runner.to_labels(runner.infer(runner.prepare([frame.image])))[0]
            writer.write(overlay(frame.image, labels, 0.5, palette))
            frames += 1
    finally:
        writer.release()
        source.close()
    return frames / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help=".engine/.onnx/.pth (default: a seeded export)")
    parser.add_argument("--size", type=parse_size, default=(256, 512), help="export size of the default model")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device", default=None)
    parser.add_argument("--frames", type=int, default=60, help="frames of the generated video")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=50, help="model-only timed iterations")
    args = parser.parse_args(argv)
    setup_logging()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or seeded_onnx(folder, args.size)
        with open_runner(model, backend=args.backend, device=args.device) as runner:
            size = runner.info.input_size
            video = write_synthetic_video(folder / "street.mp4", size=size, frames=args.frames)
            model_only = model_only_fps(runner, args.warmup, args.iters)
            serial = serial_fps(runner, video, folder / "serial.mp4", args.frames)
            report = run_video(runner, video, folder / "pipeline.mp4", PipelineOptions(warmup=args.warmup))

    pipeline = report["end_to_end_fps"]
    print(f"Model: {report['model'] if args.model else 'seeded LRNNet (ONNX export)'}; {report['backend']}, "
          f"{report['precision'].upper()}, input {size[0]}x{size[1]}; {report['device']}")
    print(f"Video: {report['frames']} generated frames at {size[0]}x{size[1]}")
    print(f"{'':<28}{'FPS':>8}")
    print(f"{'model-only (runner.infer)':<28}{model_only['fps']:8.1f}   p50 {model_only['p50_ms']:.2f} ms, "
          f"p99 {model_only['p99_ms']:.2f} ms")
    print(f"{'serial loop, one thread':<28}{serial:8.1f}")
    print(f"{'pipeline (run_video)':<28}{pipeline:8.1f}   infer inside it: {report['model_fps']:.1f} FPS")
    print(f"pipeline / model-only = {pipeline / model_only['fps']:.2f}   pipeline / serial = {pipeline / serial:.2f}")
    stages = ", ".join(f"{stage} {report['latency_ms'][stage]['mean_ms']:.2f}"
                       for stage in ("decode", "preprocess", "infer", "postprocess", "encode"))
    print(f"pipeline stage means (ms): {stages}")
    print(report["target"]["end_to_end"]["note"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
