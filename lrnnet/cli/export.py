"""lrnnet-export: PyTorch checkpoint -> verified ONNX with an SVD-free power-iteration graph."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lrnnet.cli._common import Parser, count, image_side, make_parser, positive_int, run_command

PROG = "lrnnet-export"


def build_parser() -> Parser:
    from lrnnet.export.onnx import DEFAULT_OPSET, MAX_OPSET, MIN_OPSET
    from lrnnet.limits import MAX_IMAGES, MAX_POWER_ITERATIONS, PIXELS_IN_ALL

    parser = make_parser(
        PROG,
        "Export an LRNNet checkpoint to ONNX for TensorRT 10/11 and ONNX Runtime. The reduced non-local "
        "module's SVD becomes a fixed number of unrolled power iterations (no Loop/If/SVD ops); the graph "
        "is checked for TensorRT-native ops, simplified with onnxslim, verified against PyTorch with ONNX "
        "Runtime, and written with the metadata later commands read. Nothing is written on failure.",
    )
    parser.add_argument("checkpoint", help="a .pth state dict or a training checkpoint ({'model': ..., "
                                           "'model_config': ...} as lrnnet-train writes it)")
    parser.add_argument("-o", "--output", default="lrnnet.onnx",
                        help="output ONNX file, an .onnx name (lrnnet-build-engine reads lrnnet.onnx by default)")
    parser.add_argument("--height", type=image_side, default=None,
                        help="input height, a multiple of the network's stride (8 for LRNNet); default the "
                             "checkpoint's validation size (lrnnet-train records it), else 512")
    parser.add_argument("--width", type=image_side, default=None,
                        help="input width, a multiple of 8; default the checkpoint's validation size, else 1024")
    parser.add_argument("--batch", type=positive_int, default=1,
                        help=f"batch size of a static graph (batch x height x width at most {PIXELS_IN_ALL})")
    parser.add_argument("--dynamic", action="store_true",
                        help="dynamic batch, height and width; any H and W that are multiples of the network's "
                             "stride (8 for LRNNet) then work, --height/--width/--batch give the traced shape")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar=f"{{{MIN_OPSET}..{MAX_OPSET}}}",
                        help="ONNX opset")
    parser.add_argument("--power-iterations", type=positive_int, default=None,
                        help=f"power iterations replacing the SVD, 1..{MAX_POWER_ITERATIONS} (default: the "
                             "checkpoint's own count, 15 for LRNNet)")
    parser.add_argument("--preprocess-in-graph", action="store_true",
                        help="graph input is uint8 NHWC BGR frames at the export size; normalisation in the graph")
    parser.add_argument("--argmax", action="store_true",
                        help="graph output is the int32 N x H x W class map instead of float logits")
    parser.add_argument("--no-simplify", action="store_true", help="skip the onnxslim simplification")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the ONNX Runtime vs PyTorch comparison (the op and ONNX checks still run)")
    parser.add_argument("--verify-scenes", type=count(MAX_IMAGES, minimum=0), default=3,
                        help="synthetic street scenes to verify on (plus a gradient and a checkerboard)")
    return parser


def _run(args: argparse.Namespace) -> int:
    from lrnnet._io import preflight
    from lrnnet.export.onnx import ExportOptions, default_export_size, export_checkpoint

    preflight(inputs=[args.checkpoint], outputs=[args.output])

    if args.height is None or args.width is None:
        default_height, default_width = default_export_size(args.checkpoint)
        args.height, args.width = args.height or default_height, args.width or default_width
    options = ExportOptions(
        height=args.height, width=args.width, batch=args.batch, dynamic=args.dynamic, opset=args.opset,
        power_iterations=args.power_iterations, preprocess_in_graph=args.preprocess_in_graph,
        argmax=args.argmax, simplify=not args.no_simplify, verify=not args.no_verify,
        verify_scenes=args.verify_scenes,
    )
    report = export_checkpoint(args.checkpoint, args.output, options)
    print(report.summary())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, _run, build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
