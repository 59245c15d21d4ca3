"""FP32 / FP16 / INT8 per target (lrnnet.calib.recipes), side by side: speed vs FP32, fraction of peak, accuracy.

One command, sensible defaults: with no checkpoint it trains LRNNet briefly on synthetic scenes
(as the test fixture does, ~1-2 min on 2 cores), because precision losses only show on a model
that has learned something. Then, through the library's own build path (lrnnet.engine.build),

* accuracy, per target: the FP32/FP16/INT8 graphs at the trained size (--accuracy-size), run on
  ONNX Runtime CPU through ``open_runner(...).infer`` over the val split of --data (default: a
  fresh synthetic tree, scenes never trained on): mIoU over the classes the ground truth contains,
  and pixel agreement of each graph's argmax with FP32's. TensorRT-target graphs are TensorRT-ready
  graphs (lrnnet_<p>.trt.onnx); their accuracy is measured on ONNX Runtime CPU, which runs them.
* speed, ONNX Runtime target: the three engines at --speed-size (default the paper's 1x3x512x1024),
  timed round-robin in one process through ``open_runner(...).infer`` (--rounds rounds after
  warm-up), so load on a shared machine hits all alike: median latency, and the per-round speed
  ratio FP32/engine as min/median/max; the achieved GFLOP/s (GOP/s for INT8) and its fraction of
  this machine's FP32 or u8s8 GEMM peak (lrnnet.runtime.peak, measured in the same run).
  TensorRT-target speed needs a GPU: marked so.

    .venv/bin/python benchmarks/bench_precision.py [CHECKPOINT] [--data ROOT] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from _timing import interleaved_times_ms

from lrnnet.calib.int8 import Int8Options
from lrnnet.cli._common import parse_size
from lrnnet.data.cityscapes import CityscapesDataset
from lrnnet.data.preprocess import preprocess, resize_labels
from lrnnet.engine.build import BuildOptions, build_engine
from lrnnet.eval.metrics import ConfusionMatrix
from lrnnet.log import set_progress, setup_logging
from lrnnet.runtime import open_runner

PRECISIONS = ("fp32", "fp16", "int8")
TARGETS = ("onnxruntime", "tensorrt")
# The test fixture's recipe (tests/fixtures_train.py): a model that segments unseen scenes clearly.
TRAIN_RECIPE = {"size": (128, 256), "crop": (64, 128), "scale_range": (0.75, 1.5), "iters": 100, "batch": 8,
                "lr": 5e-3, "synthetic_train": 32, "synthetic_val": 8, "synthetic_seed": 1, "seed": 0, "threads": 1}


def train_checkpoint(work: Path) -> tuple[Path, Path]:
    """(checkpoint, its synthetic training tree): LRNNet trained briefly on synthetic scenes."""
    from lrnnet.train import TrainConfig, train

    result = train(TrainConfig(synthetic=True, out=work / "train", val_every=10**6, **TRAIN_RECIPE))
    print(f"trained {result.last} (val mIoU {100 * result.final_miou:.1f} on its own synthetic val split)",
          file=sys.stderr)
    return result.last, result.data_root


def export(checkpoint: Path, path: Path, size: tuple[int, int]) -> Path:
    from lrnnet.export import ExportOptions, export_checkpoint

    export_checkpoint(checkpoint, path, ExportOptions(height=size[0], width=size[1], verify=False))
    return path


def build_all(source: Path, target: str, calib: Path, images: int, out: Path) -> dict[str, Path]:
    """The FP32/FP16/INT8 files of `target` built from `source` (precision graphs for TensorRT)."""
    files = {}
    out.mkdir(parents=True, exist_ok=True)
    for precision in PRECISIONS:
        suffix = ".engine" if target == "tensorrt" else ".onnx"
        calibration = {"calib_data": calib, "int8": Int8Options(images=images)} if precision == "int8" else {}
        result = build_engine(BuildOptions(onnx=source, precision=precision, backend=target,
                                           output=out / f"{target}_{precision}{suffix}", **calibration))
        files[precision] = result.precision_onnx  # what ONNX Runtime runs (for TensorRT: the ready graph)
    return files


def evaluate(path: Path, root: Path, size: tuple[int, int], limit: int) -> tuple[float, np.ndarray]:
    """(mIoU in points over the classes present in the ground truth, the predictions) on the val split."""
    runner = open_runner(path, backend="onnxruntime", device="cpu")
    matrix, predictions = ConfusionMatrix(), []
    dataset = CityscapesDataset(root, "val")
    for index in range(min(limit, len(dataset))):
        image, labels, _ = dataset[index]
        assert labels is not None
        prediction = runner.infer(preprocess(image, size)).argmax(1)[0]
        matrix.update(prediction, resize_labels(labels, size))
        predictions.append(prediction)
    runner.close()
    present = matrix.matrix.sum(axis=1) > 0
    return 100.0 * float(np.nanmean(matrix.iou()[present])), np.stack(predictions)


def time_round_robin(files: dict[str, Path], batch: np.ndarray, rounds: int, warmup: int) -> dict[str, list[float]]:
    runners = {precision: open_runner(path, backend="onnxruntime", device="cpu") for precision, path in files.items()}
    times = interleaved_times_ms([lambda r=r: r.infer(batch) for r in runners.values()], rounds, warmup=warmup)
    for runner in runners.values():
        runner.close()
    return dict(zip(runners, times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, nargs="?", default=None,
                        help="an lrnnet checkpoint (default: train one on synthetic scenes)")
    parser.add_argument("--data", type=Path, default=None,
                        help="Cityscapes root: calibration (train) and accuracy (val); default synthetic")
    parser.add_argument("--accuracy-size", type=parse_size, default=(128, 256), help="HxW of the accuracy graphs")
    parser.add_argument("--speed-size", type=parse_size, default=(512, 1024), help="HxW of the timed engines")
    parser.add_argument("--calib-images", type=int, default=16)
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=20, help="timed round-robin rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-peak", action="store_true", help="skip the GEMM peak measurement")
    args = parser.parse_args(argv)
    setup_logging()
    set_progress(False)

    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        work = Path(tmp)
        checkpoint, calib = (args.checkpoint, args.data) if args.checkpoint else train_checkpoint(work)
        val = args.data
        if val is None:
            from lrnnet.data.synthetic import write_synthetic_cityscapes

            val = write_synthetic_cityscapes(work / "val", size=args.accuracy_size,
                                             counts={"train": args.calib_images, "val": args.val_images}, cities=2,
                                             seed=2)  # seed 2: scenes the training (seed 1) never saw
        if calib is None:
            calib = val

        # Speed, ONNX Runtime target, at the speed size.
        large = export(checkpoint, work / "large.onnx", args.speed_size)
        speed_files = build_all(large, "onnxruntime", calib, args.calib_images, work / "speed")
        image = CityscapesDataset(val, "val")[0][0]
        times = time_round_robin(speed_files, preprocess(image, args.speed_size), args.rounds, args.warmup)
        # Accuracy per target, at the trained size.
        small = export(checkpoint, work / "small.onnx", args.accuracy_size)
        accuracy: dict[tuple[str, str], tuple[float, float]] = {}
        for target in TARGETS:
            files = build_all(small, target, calib, args.calib_images, work / f"acc_{target}")
            results = {p: evaluate(files[p], val, args.accuracy_size, args.val_images) for p in PRECISIONS}
            reference = results["fp32"][1]
            for precision, (miou, prediction) in results.items():
                accuracy[target, precision] = (miou, 100.0 * float(np.mean(prediction == reference)))

        peaks = ops = None
        if not args.no_peak:
            from lrnnet.runtime.peak import measure_gemm_peaks, model_ops

            peaks = measure_gemm_peaks()
            ops = model_ops(large, (1, 3, *args.speed_size))

    import onnxruntime

    from lrnnet.runtime._device import cpu_name

    h, w = args.speed_size
    print(f"Precision per target. ONNX Runtime {onnxruntime.__version__}, {cpu_name()}; speed at 1x3x{h}x{w}, "
          f"{args.rounds} round-robin rounds through open_runner(...).infer; accuracy at "
          f"{args.accuracy_size[0]}x{args.accuracy_size[1]} on {args.val_images} val images, INT8 calibrated on "
          f"{args.calib_images} training images")
    if peaks is not None:
        print(peaks.summary())
    print(f"{'target':12} {'precision':9} {'median ms':>9} {'speed vs FP32 (min/median/max)':>31} "
          f"{'achieved':>13} {'of peak':>8} {'mIoU':>6} {'Δ':>6} {'agree':>7}")
    base = times["fp32"]
    for target in TARGETS:
        for precision in PRECISIONS:
            miou, agree = accuracy[target, precision]
            delta = miou - accuracy[target, "fp32"][0]
            if target == "onnxruntime":
                samples = times[precision]
                ratios = sorted(b / t for b, t in zip(base, samples))
                median = statistics.median(samples)
                speed = f"{ratios[0]:.2f}x / {statistics.median(ratios):.2f}x / {ratios[-1]:.2f}x"
                achieved = fraction = ""
                if peaks is not None and ops is not None:
                    peak, unit = peaks.for_precision(precision)
                    rate = ops.giga / (median / 1000.0)
                    achieved, fraction = f"{rate:.0f} {unit[:-2]}", f"{100 * rate / peak:.0f}%"
                print(f"{target:12} {precision:9} {median:9.1f} {speed:>31} {achieved:>13} {fraction:>8} "
                      f"{miou:6.2f} {delta:+6.2f} {agree:6.2f}%")
            else:
                print(f"{target:12} {precision:9} {'-':>9} {'needs a GPU (TensorRT)':>31} {'':>13} {'':>8} "
                      f"{miou:6.2f} {delta:+6.2f} {agree:6.2f}%")
    print("speed: per-round FP32 time / engine time; achieved: model GFLOP (GOP for INT8) per median latency, "
          "against this machine's FP32 (u8s8 for INT8) GEMM peak; mIoU over the classes in the ground truth; "
          "Δ vs the target's FP32; agree: pixels with FP32's argmax. A shared machine makes every ratio noisy.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
