"""FP32 vs FP16 vs INT8 graphs on ONNX Runtime CPU, side by side in one run: latency ratios and mIoU.

From a checkpoint, through the library: export at --size (lrnnet.export), FP16 and INT8 graphs
(lrnnet.calib; INT8 calibrated on the training split of --data), then for each graph

* latency: the same preprocessed input, --warmup untimed then --iters timed runs, interleaved
  round-robin across the three graphs (so load on a shared machine hits all alike), mean and p50;
  the speed ratio is FP32's p50 over the graph's p50;
* mIoU over the val split of --data (lrnnet.eval.metrics.ConfusionMatrix at the model's input size).

Without --data, a synthetic Cityscapes tree is written for the purpose (lrnnet.data.synthetic).
Ratios are what this measures; CPU absolute times say nothing about a GPU.

    .venv/bin/python benchmarks/bench_precision.py CHECKPOINT [--data CITYSCAPES_ROOT] [--size 128x256]
        [--calib-images 16] [--val-images 8] [--warmup 5 --iters 30] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from _timing import interleaved_times_ms

from lrnnet.calib.fp16 import convert_to_fp16
from lrnnet.calib.graph import load_source_onnx
from lrnnet.calib.int8 import CALIB_METHODS, DEFAULT_CALIB_METHOD, Int8Options, quantize_int8
from lrnnet.cli._common import parse_size
from lrnnet.data.cityscapes import CityscapesDataset
from lrnnet.data.preprocess import preprocess, resize_labels
from lrnnet.eval.metrics import ConfusionMatrix
from lrnnet.log import set_progress, setup_logging


def session(model: onnx.ModelProto, threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def evaluate(sess: ort.InferenceSession, root: Path, size: tuple[int, int], limit: int) -> tuple[ConfusionMatrix, np.ndarray]:
    """The confusion matrix over the first `limit` val images, and the predictions."""
    dataset = CityscapesDataset(root, "val")
    name = sess.get_inputs()[0].name
    matrix, predictions = ConfusionMatrix(), []
    for index in range(min(limit, len(dataset))):
        image, labels, _ = dataset[index]
        assert labels is not None  # CityscapesDataset requires labels by default
        prediction = sess.run(None, {name: preprocess(image, size)})[0].argmax(1)[0]
        matrix.update(prediction, resize_labels(labels, size))
        predictions.append(prediction)
    return matrix, np.stack(predictions)


def present_class_miou(matrix: ConfusionMatrix) -> float:
    """mIoU over the classes the ground truth contains (stable on small sets; see the accuracy test)."""
    return 100.0 * float(np.nanmean(matrix.iou()[matrix.matrix.sum(axis=1) > 0]))


def latencies(sessions: dict[str, ort.InferenceSession], batch: np.ndarray, warmup: int,
              iters: int) -> dict[str, np.ndarray]:
    name = next(iter(sessions.values())).get_inputs()[0].name
    for sess in sessions.values():  # warm each graph up in turn before the round-robin
        for _ in range(warmup):
            sess.run(None, {name: batch})
    runs = [lambda sess=sess: sess.run(None, {name: batch}) for sess in sessions.values()]
    times = dict(zip(sessions, interleaved_times_ms(runs, iters, warmup=0)))
    return {label: np.array(values) for label, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="an lrnnet training checkpoint (.pth)")
    parser.add_argument("--data", type=Path, default=None, help="Cityscapes root (default: synthetic scenes)")
    parser.add_argument("--size", type=parse_size, default=(128, 256), help="export HEIGHTxWIDTH")
    parser.add_argument("--calib-images", type=int, default=16)
    parser.add_argument("--calib-method", choices=CALIB_METHODS, default=DEFAULT_CALIB_METHOD)
    parser.add_argument("--val-images", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads")
    args = parser.parse_args(argv)
    setup_logging()
    set_progress(False)

    from lrnnet.export import ExportOptions, export_checkpoint

    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        work = Path(tmp)
        data = args.data
        if data is None:
            from lrnnet.data.synthetic import write_synthetic_cityscapes

            data = write_synthetic_cityscapes(work / "cityscapes", size=args.size,
                                              counts={"train": args.calib_images, "val": args.val_images},
                                              cities=2, seed=2)  # seed 2: scenes the test fixture (seed 1) never trained on
        source_path = work / "lrnnet.onnx"
        export_checkpoint(args.checkpoint, source_path, ExportOptions(height=args.size[0], width=args.size[1],
                                                                      verify=False))
        source = load_source_onnx(source_path)
        int8, record = quantize_int8(source, data, Int8Options(method=args.calib_method, images=args.calib_images))
        models = {"fp32": source.model, "fp16": convert_to_fp16(source), "int8": int8}
        sessions = {label: session(model, args.threads) for label, model in models.items()}
        results = {label: evaluate(sess, data, args.size, args.val_images) for label, sess in sessions.items()}
        val_images = len(results["fp32"][1])
        image = CityscapesDataset(data, "val")[0][0]
        times = latencies(sessions, preprocess(image, args.size), args.warmup, args.iters)

    print(f"ONNX Runtime {ort.__version__} CPU, input {args.size[0]}x{args.size[1]}, {args.iters} timed runs each "
          f"(round-robin); INT8 calibrated on {record.images} images ({record.method}); {val_images} val images")
    print(f"{'graph':6} {'mean ms':>8} {'p50 ms':>8} {'speed':>7} {'mIoU':>6} {'Δ':>6} {'mIoU*':>6} {'Δ*':>6} "
          f"{'agree':>7}")
    base_p50, (base_matrix, base_pred) = np.percentile(times["fp32"], 50), results["fp32"]
    for label in models:
        matrix, prediction = results[label]
        mean, p50 = times[label].mean(), np.percentile(times[label], 50)
        official, present = 100.0 * matrix.miou(), present_class_miou(matrix)
        print(f"{label:6} {mean:8.2f} {p50:8.2f} {base_p50 / p50:6.2f}x {official:6.2f} "
              f"{official - 100.0 * base_matrix.miou():+6.2f} {present:6.2f} {present - present_class_miou(base_matrix):+6.2f} "
              f"{100.0 * np.mean(prediction == base_pred):6.2f}%")
    print("speed: FP32 p50 / p50 (the median resists load spikes on a shared machine); mIoU: official 19-class mean (ConfusionMatrix.miou); mIoU*: over the classes "
          "in the ground truth; Δ: vs FP32 in points; agree: pixels with FP32's argmax")
    return 0


if __name__ == "__main__":
    sys.exit(main())
