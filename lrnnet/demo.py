"""The whole lrnnet path in one run, as a user would type it (issue 11).

Each step is the real console command (its `main(argv)`, in this process), printed before it runs
so it can be copied: synthetic Cityscapes scenes (unless a real tree is given) -> lrnnet-train ->
lrnnet-export -> lrnnet-build-engine FP16 and INT8 -> lrnnet-eval --compare -> lrnnet-infer on a
street video -> lrnnet-bench, plus a preview PNG (frame | prediction | ground truth).

A rerun in the same workdir continues: the synthetic scenes are reused when they were made with
the same settings (their marker, lrnnet.train.data.prepare_synthetic), the training is resumed
from run/last.pth, or skipped when that run finished with the same settings; the later steps run
again (each rewrites its outputs atomically).
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrnnet.errors import InputError
from lrnnet.log import logger

# The demo trains on random crops of half the network size, at these scales (the tests' fixture recipe).
TRAIN_SCALES = (0.75, 1.5)


class StepFailed(Exception):
    """A step's command failed and said why on stderr, in its one line: the demo exits with its status."""

    def __init__(self, title: str, status: int) -> None:
        super().__init__(f"demo step '{title}' failed (exit {status})")
        self.status = status


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path = Path("demo")
    cityscapes: Path | None = None  # a real Cityscapes root; None generates synthetic scenes
    size: tuple[int, int] = (128, 256)  # network input (height, width): small, so the CPU demo takes minutes
    scene_size: tuple[int, int] = (256, 512)  # synthetic images and video frames
    train_images: int = 64
    # The tests' trained fixture recipe, longer: random crops of half the size at a high Adam rate.
    # 320 steps (40 epochs of 8 batches) at ~0.36 s a step on one thread (Xeon, 2 vCPUs) leave room
    # for the rest in 3 minutes; 400 steps reached 67% val mIoU on the synthetic scenes, 66% at 240.
    train_iters: int = 320
    validations: int = 5  # validation points during training: curves.png shows a curve, not a point
    batch: int = 8
    lr: float = 5e-3
    calib_images: int = 16  # calibration is the slowest build step (~0.8 s an image on the shared box)
    video_frames: int = 60
    bench_iters: int = 30
    paper_bench_iters: int = 5  # 512x1024 on one CPU thread: about 1.3 s each on the shared box
    seed: int = 0

    @property
    def train_crop(self) -> tuple[int, int]:
        return self.size[0] // 2, self.size[1] // 2

    @property
    def val_images(self) -> int:
        return max(self.train_images // 4, 2)

    def validate(self) -> None:
        """Everything the steps would refuse about these options, before the first step writes anything."""
        from lrnnet.models import LRNNet
        from lrnnet.train.config import check_training_sizes

        multiple = 2 * LRNNet.input_stride  # the half-size crop must be a multiple of the stride
        if self.size[0] % multiple or self.size[1] % multiple:
            raise InputError(f"--size must be multiples of {multiple} (the demo trains on half-size crops, multiples "
                             f"of the model's stride {LRNNet.input_stride}), got {self.size[0]}x{self.size[1]}")
        try:
            check_training_sizes(self.size, self.train_crop, TRAIN_SCALES)
        except InputError as exc:
            raise InputError(f"--size {self.size[0]}x{self.size[1]} is too large for the demo's training at scales "
                             f"{TRAIN_SCALES[0]}-{TRAIN_SCALES[1]} ({exc})") from None
        if self.cityscapes is not None:
            self._check_cityscapes(self.cityscapes)

    def _check_cityscapes(self, root: Path) -> None:
        from lrnnet.data import CityscapesDataset
        from lrnnet.train.data import check_split

        if not root.is_dir():
            raise InputError(f"--cityscapes {root} is not a folder")
        check_split(CityscapesDataset(root, "train"), self.batch)  # InputError for a tree of another layout
        CityscapesDataset(root, "val")


def _step(title: str, prog: str, main: Callable[[Sequence[str]], int], argv: list[str]) -> float:
    print(f"\n== {title}\n$ {prog} {shlex.join(argv)}", flush=True)
    start = time.perf_counter()
    status = main(argv)
    if status != 0:
        raise StepFailed(title, status)  # its command printed the one error line
    return time.perf_counter() - start


def _training_argv(run: Path, argv: list[str]) -> list[str] | None:
    """lrnnet-train's arguments for a rerun: the same, plus --resume when `run` holds this run unfinished;
    None when it holds it finished. A run there with other settings is refused (it is someone's result)."""
    import torch

    from lrnnet.cli import train
    from lrnnet.train import LAST
    from lrnnet.train.trainer import changed_settings

    last = run / LAST
    if not last.is_file():
        return argv
    try:  # mmap: the few numbers are read, not the tensors
        payload = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
        step, total, previous = int(payload["step"]), int(payload["total_steps"]), dict(payload["train_config"])
    except Exception:  # noqa: BLE001 - damaged or foreign: lrnnet-train --resume says what is wrong with it
        return [*argv, "--resume", str(last)]
    changed = changed_settings(previous, train.config_from_args(train.build_parser().parse_args(argv)).resolved())
    if changed:
        raise InputError(f"{run} holds a training run with other settings ({'; '.join(changed)}); "
                         "remove it or choose another --workdir")
    if step >= total:
        return None
    return [*argv, "--resume", str(last)]


def _size_arg(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _demo_video(options: DemoOptions, data: Path, work: Path) -> Path:
    """A real Cityscapes demoVideo sequence (an image folder) when the tree has one, else a synthetic street video."""
    from lrnnet.data import demo_video_sequences, write_synthetic_video

    if options.cityscapes is not None:
        try:
            return next(iter(demo_video_sequences(data).values()))[0].parent
        except InputError:
            logger.info("No demoVideo sequences in %s: using a synthetic street video", data)
    return write_synthetic_video(work / "street.mp4", size=options.scene_size, frames=options.video_frames,
                                 seed=options.seed)


def write_preview(model: Path, dataset_root: Path, target: Path) -> Path:
    """Frame | prediction | ground truth of the first validation image, side by side."""
    from lrnnet._io import atomic_output, write_image
    from lrnnet.data import CityscapesDataset, colorize, overlay, resize_labels
    from lrnnet.runtime.factory import open_runner

    frame, ground_truth, sample = CityscapesDataset(dataset_root, "val")[0]
    if ground_truth is None:
        raise InputError(f"{sample.image_path} has no ground truth for the preview")
    with open_runner(model) as runner:
        prediction = runner.predict([frame])[0].astype(np.uint8)
    prediction = resize_labels(prediction, frame.shape[:2])
    panels = [frame, overlay(frame, prediction, 0.6), colorize(ground_truth)]
    with atomic_output(target) as tmp:
        write_image(tmp, np.concatenate(panels, axis=1))
    return target


def run_demo(options: DemoOptions) -> dict[str, Path]:
    from lrnnet._io import claim_folder
    from lrnnet.cli import bench, build_engine, export, infer, train
    from lrnnet.cli import eval as eval_cli
    from lrnnet.train.data import prepare_synthetic

    options.validate()
    work = options.workdir
    claim_folder(work)  # lrnnet's from now on: a rerun may write here again, a folder of the user's is refused
    work.mkdir(parents=True, exist_ok=True)
    size = _size_arg(options.size)
    timings: dict[str, float] = {}
    started, cpu_started = time.perf_counter(), time.process_time()

    if options.cityscapes is None:
        data = work / "cityscapes"
        print(f"== No --cityscapes given: synthetic street scenes in {data}", flush=True)
        prepare_synthetic(data, options.scene_size, {"train": options.train_images, "val": options.val_images},
                          options.seed)  # reused when a run before made the same ones
    else:
        data = options.cityscapes
    run = work / "run"
    epochs = -(-options.train_iters // max(1, options.train_images // options.batch))
    train_argv = _training_argv(run, [
        "--data", str(data), "--size", size, "--crop", _size_arg(options.train_crop),
        "--scale-range", *map(str, TRAIN_SCALES), "--iters", str(options.train_iters), "--batch", str(options.batch),
        "--lr", str(options.lr), "--val-every", str(max(1, epochs // options.validations)), "--out", str(run),
        "--seed", str(options.seed)])
    if train_argv is None:
        print(f"\n== Train LRNNet: {run} holds this training, finished; skipped", flush=True)
    else:
        timings["train"] = _step("Train LRNNet", "lrnnet-train", train.main, train_argv)
    checkpoint = run / "best.pth"

    onnx_path = work / "lrnnet.onnx"
    # No --height/--width: the checkpoint records the size it was validated at, and export uses it.
    timings["export"] = _step("Export to ONNX (power-iteration SVN, verified against PyTorch)", "lrnnet-export",
                              export.main, [str(checkpoint), "-o", str(onnx_path)])
    engines = {}
    for precision in ("fp16", "int8"):
        engine = work / f"lrnnet_{precision}.onnx"
        argv = [f"--{precision}", "--onnx", str(onnx_path), "-o", str(engine), "--backend", "onnxruntime"]
        if precision == "int8":
            argv += ["--calib-data", str(data), "--calib-images", str(options.calib_images),
                     "--calib-cache", str(work / "calibration.json")]
        timings[f"build {precision}"] = _step(f"Build the {precision.upper()} engine", "lrnnet-build-engine",
                                              build_engine.main, argv)
        engines[precision] = engine

    accuracy = work / "accuracy.json"
    timings["eval"] = _step("Accuracy of every backend and precision against FP32 PyTorch", "lrnnet-eval",
                            eval_cli.main, ["--compare", str(checkpoint), str(onnx_path), str(engines["fp16"]),
                                            str(engines["int8"]), "--data", str(data), "--json", str(accuracy)])

    video = _demo_video(options, data, work)
    overlay_video = work / "street_seg.mp4"
    latency = work / "latency.json"
    timings["infer"] = _step("Segment a street video (INT8 engine)", "lrnnet-infer", infer.main, [
        str(video), "--model", str(engines["int8"]), "-o", str(overlay_video), "--report", str(latency),
        "--max-frames", str(options.video_frames)])

    speed = work / "speed.json"
    timings["bench"] = _step("Model-only speed of the FP32 ONNX at the demo size", "lrnnet-bench", bench.main, [
        "--model", str(onnx_path), "--warmup", "5", "--iters", str(options.bench_iters), "--json", str(speed)])
    paper_speed = work / "speed_512x1024.json"
    timings["bench 512x1024"] = _step("The paper's protocol (1x3x512x1024) on the PyTorch checkpoint", "lrnnet-bench",
                                      bench.main, ["--model", str(checkpoint), "--height", "512", "--width", "1024",
                                                   "--warmup", "1", "--iters", str(options.paper_bench_iters),
                                                   "--json", str(paper_speed)])

    print("\n== Preview: frame | prediction (INT8 engine) | ground truth", flush=True)
    preview = write_preview(engines["int8"], data, work / "preview.png")
    artifacts = {
        "training run (checkpoints, log.csv, curves.png)": run,
        "FP32 ONNX": onnx_path, "FP16 engine": engines["fp16"], "INT8 engine": engines["int8"],
        "accuracy table": accuracy, "overlay video": overlay_video, "latency report": latency,
        "speed report (demo size)": speed, "speed report (512x1024)": paper_speed,
        "preview (frame | prediction | ground truth)": preview,
    }
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    # CPU time beside the wall time: on a machine shared with other work the wall time stretches, the
    # CPU time this process used much less (it exceeds the wall time where several threads ran).
    print(f"\n== Demo finished in {total / 60:.1f} min "
          f"({', '.join(f'{name} {seconds:.0f}s' for name, seconds in timings.items())}; "
          f"CPU time {cpu:.0f} s)")
    for what, path in artifacts.items():
        print(f"  {what:48s} {path}")
    print("What the figures mean: mIoU % is the mean intersection-over-union over the classes present in prediction "
          "or ground truth (the JSON holds it as a fraction); 'vs ref' is each engine's change against FP32 PyTorch "
          "on the same images. Latencies are on this machine; "
          "the 71 FPS target is the paper's GTX 1080Ti at 512x1024, so on a CPU it is a reference, not a verdict.")
    logger.debug("demo artifacts: %s", artifacts)
    return artifacts
