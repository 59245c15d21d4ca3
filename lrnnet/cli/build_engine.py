"""lrnnet-build-engine: turn the FP32 export into the fastest engine this machine can run."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lrnnet.cli._common import Parser, count, make_parser, positive_int, run_command
from lrnnet.limits import MAX_IMAGES, PIXELS_IN_ALL

PROG = "lrnnet-build-engine"


def build_parser() -> Parser:
    from lrnnet.calib.int8 import CALIB_METHODS, DEFAULT_CALIB_METHOD
    from lrnnet.calib.reader import DEFAULT_CALIB_IMAGES
    from lrnnet.engine.build import BACKEND_CHOICES, DEFAULT_SOURCE

    parser = make_parser(PROG, "Build an FP16 or INT8 (calibrated) engine from lrnnet.onnx, by the precision recipe "
                               "of its target (--backend): for TensorRT lrnnet_<precision>.trt.onnx, the TensorRT-ready "
                               "graph (written on any machine), and lrnnet_<precision>.engine where TensorRT and a GPU "
                               "are; for ONNX Runtime lrnnet_<precision>.onnx. Each with a .json sidecar.")
    precision = parser.add_mutually_exclusive_group(required=True)
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                           help="half precision (power iteration and softmax kept in FP32)")
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8",
                           help="INT8 Q/DQ, calibrated on Cityscapes training images (needs --calib-data)")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32",
                           help="full precision (the paper's setting)")
    parser.add_argument("source", type=Path, nargs="?", default=None, metavar="ONNX",
                        help=f"the FP32 export (lrnnet-export; default {DEFAULT_SOURCE}), or a TensorRT-ready graph "
                             "(lrnnet_<precision>.trt.onnx) to build its TensorRT engine")
    parser.add_argument("--onnx", type=Path, default=None, help="the same as ONNX (kept for scripts)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="engine path (default lrnnet_<precision>.engine for TensorRT, "
                             "lrnnet_<precision>.onnx for ONNX Runtime, in the current folder)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="the target, which picks the precision recipe (lrnnet.calib.recipes); auto: TensorRT "
                             "when it and a GPU are present, else ONNX Runtime")
    parser.add_argument("--keep-io-fp32", action=argparse.BooleanOptionalAction, default=True,
                        help="FP16: keep float32 inputs/outputs (casts inside the graph)")
    calib = parser.add_argument_group("INT8 calibration")
    calib.add_argument("--calib-data", type=Path, default=None,
                       help="what to calibrate on: a Cityscapes root (images from leftImg8bit/train, spread "
                            "across cities), any folder of images (searched recursively), or a video file "
                            "(frames spread evenly over it)")
    calib.add_argument("--calib-images", type=count(MAX_IMAGES), default=DEFAULT_CALIB_IMAGES,
                       help="number of calibration images (or video frames), a deterministic, evenly spread subset")
    calib.add_argument("--calib-method", choices=CALIB_METHODS, default=DEFAULT_CALIB_METHOD,
                       help="how activation ranges are chosen from the calibration images")
    calib.add_argument("--calib-cache", type=Path, default=None,
                       help="calibration cache (JSON, plus a TensorRT calibration table beside it): reused "
                            "without reading images when it matches the model and settings, else written. "
                            "With --legacy-calibrator: TensorRT's own calibration cache file")
    trt = parser.add_argument_group("TensorRT")
    trt.add_argument("--workspace", type=positive_int, default=None, metavar="MIB",
                     help="builder workspace memory limit in MiB (default: TensorRT's)")
    trt.add_argument("--timing-cache", type=Path, default=None,
                     help="timing cache file, read if present and written after the build")
    trt.add_argument("--builder-optimization-level", type=int, default=None, choices=range(6), metavar="0-5",
                     help="TensorRT builder optimization level (default 3)")
    trt.add_argument("--max-batch", type=positive_int, default=None,
                     help="dynamic-batch exports, TensorRT: largest batch the engine accepts (at least the export's batch; "
                          f"that many of the largest images at most {PIXELS_IN_ALL})")
    trt.add_argument("--legacy-calibrator", action="store_true",
                     help="TensorRT 10 only: implicit INT8 with IInt8EntropyCalibrator2 on the FP32 graph")
    return parser


def _body(args: argparse.Namespace) -> int:
    from lrnnet.calib.int8 import Int8Options
    from lrnnet.engine.build import BuildOptions, build_engine
    from lrnnet.engine.tensorrt_builder import TensorRTOptions

    options = BuildOptions(
        onnx=_source(args), precision=args.precision, backend=args.backend, output=args.output,
        calib_data=args.calib_data, int8=Int8Options(method=args.calib_method, images=args.calib_images),
        calib_cache=args.calib_cache, keep_io_fp32=args.keep_io_fp32, max_batch=args.max_batch,
        tensorrt=TensorRTOptions(workspace_mib=args.workspace, timing_cache=args.timing_cache,
                                 optimization_level=args.builder_optimization_level,
                                 legacy_calibrator=args.legacy_calibrator),
    )
    result = build_engine(options)
    print(result.summary())
    return 0


def _source(args: argparse.Namespace) -> Path:
    from lrnnet.engine.build import DEFAULT_SOURCE
    from lrnnet.errors import InputError

    if args.source is not None and args.onnx is not None and args.source != args.onnx:
        raise InputError(f"two sources given: {args.source} and --onnx {args.onnx}; pass one")
    return args.source or args.onnx or DEFAULT_SOURCE


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, _body, build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
