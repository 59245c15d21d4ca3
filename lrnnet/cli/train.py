"""lrnnet-train: train LRNNet on Cityscapes (or synthetic street scenes) with the paper's recipe."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lrnnet.cli._common import (
    Parser,
    count,
    finite_float,
    make_parser,
    parse_size,
    positive_int,
    run_command,
    thread_count,
)
from lrnnet.limits import MAX_EPOCHS, MAX_IMAGES, MAX_TRAIN_STEPS

if TYPE_CHECKING:
    from lrnnet.train import TrainConfig

PROG = "lrnnet-train"


def build_parser() -> Parser:
    from lrnnet.train.config import (
        DEFAULT_EPOCHS,
        DEFAULT_SYNTHETIC_EPOCHS,
        DEFAULT_SYNTHETIC_TRAIN,
        OPTIMIZERS,
    )

    parser = make_parser(PROG, "Train LRNNet (Adam, poly lr, random scale/crop/flip, CE with ignore 255) on a "
                               "Cityscapes-layout tree, validating mIoU each epoch with lrnnet.eval. Writes "
                               "best.pth/last.pth, log.csv, steps.csv, curves.png and summary.json to --out.")
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, metavar="ROOT",
                      help="Cityscapes root (leftImg8bit/ and gtFine/, train and val splits); with --synthetic: "
                           "the folder to generate the synthetic scenes in")
    data.add_argument("--synthetic", action="store_true",
                      help="train on generated synthetic street scenes (written to --data if given, else "
                           "OUT/synthetic; reused when already there)")
    data.add_argument("--synthetic-images", type=count(MAX_IMAGES), default=DEFAULT_SYNTHETIC_TRAIN, metavar="N",
                      help="synthetic training scenes (plus N/4, at least 2, validation scenes)")
    data.add_argument("--size", type=parse_size, metavar="HxW",
                      help="resolution the network works at: images are resized to it, validation runs at it "
                           "(default: 512x1024 as the paper, 128x256 with --synthetic)")
    data.add_argument("--crop", type=parse_size, metavar="HxW", help="training crop after random scaling "
                                                                      "(default: --size)")
    data.add_argument("--scale-range", type=finite_float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"),
                      help="random scale range: --size times MIN must keep 8 pixels (the model's stride) a side, "
                           "times MAX stay within 8192 a side")
    data.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    data.add_argument("--workers", type=int, default=0, metavar="N",
                      help="DataLoader worker processes (0 on a small CPU machine: workers would compete with "
                           "the training threads for the same cores)")

    schedule = parser.add_argument_group("schedule")
    length = schedule.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=count(MAX_EPOCHS), metavar="N",
                        help=f"passes over the training split (default {DEFAULT_EPOCHS}; "
                             f"{DEFAULT_SYNTHETIC_EPOCHS} with --synthetic)")
    length.add_argument("--iters", type=count(MAX_TRAIN_STEPS), metavar="N", help="total iterations instead of --epochs")
    schedule.add_argument("--batch", type=positive_int, default=8, metavar="N", help="images per iteration")
    schedule.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    schedule.add_argument("--lr", type=finite_float, default=5e-4, help="initial learning rate (poly decay, power 0.9)")
    schedule.add_argument("--weight-decay", type=finite_float, default=1e-4, help="L2 weight decay, from 0 to below 1")
    schedule.add_argument("--val-every", type=count(MAX_EPOCHS), default=1, metavar="N",
                          help="validate every N epochs (and after the last)")

    run = parser.add_argument_group("run")
    run.add_argument("--out", type=Path, default=Path("runs/lrnnet"), metavar="DIR", help="output folder")
    run.add_argument("--resume", type=Path, metavar="CKPT",
                     help="continue a run from its last.pth (same options: an exact continuation); Ctrl-C or "
                          "SIGTERM save one at the end of the running step")
    run.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when available)")
    run.add_argument("--amp", action="store_true", help="FP16 mixed precision (CUDA only)")
    run.add_argument("--threads", type=thread_count, metavar="N",
                     help="torch CPU threads (default: from the CPUs this process may use: 1 on 2 CPUs, which "
                          "trains several times faster than 2 on shared cores)")
    run.add_argument("--seed", type=int, default=0, help="seed of weights, data order and augmentation (0 to 2^32-1)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run lrnnet-train's arguments ask for (not yet resolved)."""
    from lrnnet.train import TrainConfig

    return TrainConfig(
        data=args.data, synthetic=args.synthetic, out=args.out, size=args.size, crop=args.crop,
        scale_range=tuple(args.scale_range), flip=not args.no_flip, epochs=args.epochs, iters=args.iters,
        batch=args.batch, optimizer=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
        resume=args.resume, device=args.device, amp=args.amp, seed=args.seed, workers=args.workers, threads=args.threads,
        val_every=args.val_every, synthetic_train=args.synthetic_images,
        synthetic_val=max(2, args.synthetic_images // 4),
    )


def _body(args: argparse.Namespace) -> int:
    from lrnnet._io import check_writable, refuse_overwrite
    from lrnnet.train import train

    refuse_overwrite(inputs=[args.data, args.resume], outputs=[args.out])
    check_writable(args.out, directory=True, make_parents=True, writes_into=True)  # before any data is written or read
    from lrnnet.export.onnx import default_export_size

    result = train(config_from_args(args))
    checkpoint = result.best or result.last
    # After a resume with another --size the best checkpoint may come from the earlier run: each size
    # is read from the checkpoint it describes (what lrnnet-export will default to), not from this run.
    best_size = _shown(default_export_size(checkpoint))
    best = "n/a" if result.best_epoch is None else \
        f"{100 * result.best_miou:.1f}% at epoch {result.best_epoch} ({best_size})"
    last = "n/a" if math.isnan(result.final_miou) else f"{100 * result.final_miou:.1f}% ({_shown(result.input_size)})"
    print(f"trained {result.steps} of {result.total_steps} steps in {result.seconds:.0f} s: best val mIoU (lrnnet.eval) "
          f"{best}, last {last}")
    print(f"checkpoints: {result.best or '-'} {result.last}; log: {result.out / 'log.csv'}; "
          f"curves: {result.out / 'curves.png'}")
    print(f"next: lrnnet-export {checkpoint}      # -> lrnnet.onnx at {best_size}, the size it was validated at")
    return 0


def _shown(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def main(argv: Sequence[str] | None = None) -> int:
    # Training commits each checkpoint on its own, so that an interrupted run can resume from it.
    return run_command(PROG, _body, build_parser, argv, all_or_nothing=False)


if __name__ == "__main__":
    raise SystemExit(main())
