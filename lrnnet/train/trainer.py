"""The training loop: LRNNet on a Cityscapes-layout tree, validated each epoch by lrnnet.eval.

Outputs in `config.out` (all written atomically):

    last.pth, best.pth   checkpoints (lrnnet.models.save_checkpoint format plus the training state)
    log.csv              one row per epoch: loss, lr, throughput, validation mIoU
    steps.csv            one row per iteration: lr and loss
    config.json          the resolved options
    curves.png           loss and mIoU curves (at the end, or when stopped)
    summary.json         the best epoch's figures and the per-class IoU of the last validation

Exact resume: the data of a step depends only on (seed, step) (see data.py), the learning rate
is a function of the step (schedule.py), and the checkpoint carries the model, optimizer, AMP
scaler and torch RNG states; so `resume` continues with the same losses as an uninterrupted run.

Stopping: Ctrl-C, SIGTERM or SIGHUP stop the run at the end of the running step (or validation),
which saves last.pth and the logs, as `on_step` returning True does; the signal is then delivered
as before (the CLI exits 130/143/129). A second signal stops at once, losing the steps since the
last checkpoint (checkpoints are atomic, so it never leaves a half file). config.json, the logs and
last.pth are written together, at a checkpoint: a run that fails before its first checkpoint
(bad settings, a loss that diverged at once) leaves nothing in `out`; one that fails later keeps
its last checkpoint, from which `--resume` continues.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch import nn

import lrnnet
from lrnnet._io import write_bytes_atomic, write_json_atomic
from lrnnet._threads import announce_threads, thread_plan
from lrnnet.data.cityscapes import CityscapesDataset
from lrnnet.data.labels import IGNORE_INDEX
from lrnnet.errors import InputError
from lrnnet.log import logger, progress_bar
from lrnnet.models import build_model, load_checkpoint, save_checkpoint
from lrnnet.train.config import RUN_DEFINING, TrainConfig
from lrnnet.train.data import EpochBatches, TrainingSet, check_split, check_synthetic_count, prepare_synthetic
from lrnnet.train.schedule import poly_lr

__all__ = ["BEST", "LAST", "TrainResult", "changed_settings", "train"]

LAST, BEST = "last.pth", "best.pth"
# last.pth is rewritten after a validation, at the end, when stopped, and otherwise at most this often,
# after any step (an epoch of real Cityscapes is an hour on a GPU): a checkpoint is an fsynced 8 MB
# write (~0.6 s on the shared box), which after every one of the demo's 8-step epochs cost a fifth of
# its training time. A crash loses at most this much training.
CHECKPOINT_EVERY_S = 60.0
_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
StepCallback = Callable[[int, float], "bool | None"]


@dataclass
class TrainResult:
    """What a run produced; `history` has one dict per epoch (the rows of log.csv)."""

    out: Path
    data_root: Path
    last: Path
    best: Path | None
    best_miou: float
    best_epoch: int | None
    steps: int
    total_steps: int
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    input_size: tuple[int, int] = (0, 0)  # (height, width) trained and validated at: export at this size
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def final_miou(self) -> float:
        values = [row["val_miou"] for row in self.history if row.get("val_miou") is not None]
        return float(values[-1]) if values else float("nan")


@dataclass
class _State:
    step: int = 0
    best_miou: float = -math.inf
    best_epoch: int | None = None
    best_checkpoint: Path | None = None  # the best's weights: OUT/best.pth, or the resumed run's (another --out)
    history: list[dict[str, Any]] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    last_report: dict[str, Any] | None = None


def train(config: TrainConfig, on_step: StepCallback | None = None) -> TrainResult:
    """Train LRNNet as `config` says.

    `on_step(step, loss)` is called after every iteration; returning True stops the run there and
    leaves a resumable last.pth (early stopping, time limits). Ctrl-C, SIGTERM and SIGHUP do the same,
    then go on to their handler (KeyboardInterrupt ...). A loss that diverges is an InputError.
    """
    config = config.resolved()
    started = time.perf_counter()
    _check_out(config.out, config.resume)
    # A bad --resume fails before any data is read or written.
    resume_from = None if config.resume is None else (config.resume, _check_resumable(config.resume, config))
    if config.synthetic:
        check_synthetic_count(config.synthetic_train, config.batch)
    root = _prepare_data(config)
    train_split = CityscapesDataset(root, "train")
    val_split = CityscapesDataset(root, "val")
    check_split(train_split, config.batch)
    device = torch.device(config.device or "cpu")
    if device.type == "cpu":
        announce_threads()
    with _determinism(config.deterministic, device), _threads(config.threads), _SignalStop() as signals:
        torch.manual_seed(config.seed)  # the weight initialisation, and dropout from there on
        run = _Run(config, train_split, val_split, device)
        if resume_from is not None:
            run.resume(*resume_from)
        stopped = run.loop(on_step, signals)
        run.write_plot()
        write_json_atomic(config.out / "summary.json", run.summary(time.perf_counter() - started))
    state = run.state
    return TrainResult(out=config.out, data_root=root, last=config.out / LAST, best=state.best_checkpoint,
                       best_miou=state.best_miou if state.best_epoch is not None else float("nan"),
                       best_epoch=state.best_epoch, steps=state.step, total_steps=run.total,
                       history=state.history, step_losses=state.step_losses, input_size=config.train_size,
                       seconds=time.perf_counter() - started, stopped_early=stopped)


# -- set-up -------------------------------------------------------------------------------------------


def _check_out(out: Path, resume: Path | None) -> None:
    """Never train over another run's checkpoints: a second run into the same folder must say --resume."""
    last = out / LAST
    if not last.exists():
        return
    if resume is not None and resume.resolve() in {last.resolve(), (out / BEST).resolve()}:
        return
    raise InputError(f"{out} already holds a training run ({last}); continue it with --resume {last}, "
                     "or choose another --out")


def _check_resumable(path: Path, config: TrainConfig) -> dict[str, Any]:
    """The checkpoint's payload, if it is a training checkpoint of this model; InputError otherwise."""
    weights = load_checkpoint(path)  # InputError for anything that is not an LRNNet checkpoint
    model = build_model({"num_classes": config.num_classes, **config.model_options})
    expected = model.config
    if weights.config != expected:
        raise InputError(f"--resume {path} holds an LRNNet with options {weights.config}, but this run "
                         f"builds {expected}; resume with the same model options")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    missing = [key for key in ("optimizer", "step", "train_config", "rng") if key not in payload]
    if missing:
        raise InputError(f"--resume {path} holds model weights but no training state (no "
                         f"{', '.join(missing)}); it was not written by lrnnet-train")
    previous = payload["train_config"]
    if previous.get("optimizer") != config.optimizer:
        raise InputError(f"--resume {path} was trained with --optimizer {previous.get('optimizer')}, "
                         f"this run asks for {config.optimizer}")
    _check_training_state(path, payload, _make_optimizer(config, model))
    return payload


def _check_training_state(path: Path, payload: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Every part of the training state that resume() reads, by shape and type: one line naming the bad part.

    `optimizer` is a fresh one of this run's model: the checkpoint's state must load into it and fit
    its parameters (a wrong shape would only fail at the first step, deep inside the optimizer).
    """
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise InputError(f"--resume {path}: its training state is damaged ({what}); "
                             "resume from another checkpoint of the run")

    step, rng = payload["step"], payload["rng"]
    need(_is_int(step) and step >= 0, f"step {step!r} is not an integer >= 0")
    need(isinstance(payload["train_config"], dict), "train_config is not a dict")
    need(isinstance(rng, dict) and _is_rng_state(rng.get("torch")), "rng['torch'] is not a torch RNG state")
    need(isinstance(rng.get("cuda", []), (list, tuple)) and all(_is_rng_state(t, cpu=False) for t in rng.get("cuda", [])),
         "rng['cuda'] is not a list of CUDA RNG states")
    need(isinstance(payload.get("scaler") or {}, dict), "scaler is not a dict")
    best, best_epoch = payload.get("best_miou"), payload.get("best_epoch")
    need(best is None or (isinstance(best, (int, float)) and math.isfinite(best)), f"best_miou {best!r}")
    need(best_epoch is None or (_is_int(best_epoch) and best_epoch >= 1), f"best_epoch {best_epoch!r}")
    history, losses = payload.get("history") or [], payload.get("step_losses") or []
    need(isinstance(history, list) and all(isinstance(row, dict) for row in history), "history is not a list of rows")
    need(isinstance(losses, list) and all(isinstance(v, (int, float)) for v in losses), "step_losses is not a list "
                                                                                        "of numbers")
    try:
        optimizer.load_state_dict(payload["optimizer"])
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        need(False, f"optimizer: {' '.join(str(exc).split())}")
    for param, values in optimizer.state.items():
        need(all(not isinstance(v, torch.Tensor) or v.dim() == 0 or v.shape == param.shape for v in values.values()),
             f"optimizer state of shape other than its parameter's {tuple(param.shape)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_rng_state(value: Any, cpu: bool = True) -> bool:
    """A torch generator state: a uint8 vector (the CPU one of exactly torch's own state's size)."""
    if not (isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1):
        return False
    return not cpu or value.shape == torch.get_rng_state().shape


def _find_best_weights(resumed: Path, payload: dict[str, Any]) -> Path | None:
    """Where the weights of the resumed run's best validation are: the file its checkpoint names, else
    best.pth beside it; None (with a warning) when neither holds that validation's weights."""
    if payload.get("best_epoch") is None:
        return None
    recorded = payload.get("best_checkpoint")
    candidates = [Path(recorded)] if isinstance(recorded, str) else []
    for candidate in [*candidates, resumed.parent / BEST]:
        if _holds_best(candidate, payload):
            return candidate
    logger.warning("The weights of the best validation of %s (epoch %s) are gone (no %s): only the metric "
                   "carries on", resumed, payload["best_epoch"], resumed.parent / BEST)
    return None


def _holds_best(candidate: Path, payload: dict[str, Any]) -> bool:
    """True when `candidate` is the checkpoint saved at the best validation `payload` records."""
    try:  # mmap: only the two numbers are read, not 8 MB of tensors
        other = torch.load(candidate, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - missing, foreign or damaged: not the best's weights
        return False
    return (isinstance(other, dict) and other.get("best_epoch") == payload["best_epoch"]
            and other.get("best_miou") == payload["best_miou"])


def changed_settings(previous: dict[str, Any], config: TrainConfig) -> list[str]:
    """The settings that define a run (RUN_DEFINING) where a checkpoint's `train_config` and `config`
    differ, as 'name old -> new': empty when continuing it is an exact continuation."""
    current = config.to_dict()
    return [f"{key} {previous.get(key)!r} -> {current[key]!r}" for key in RUN_DEFINING
            if previous.get(key) != current[key]]


def _prepare_data(config: TrainConfig) -> Path:
    if config.synthetic:
        root = config.synthetic_root
        assert root is not None
        return prepare_synthetic(root, config.train_size,
                                 {"train": config.synthetic_train, "val": config.synthetic_val}, config.synthetic_seed)
    return config.data_root


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """torch's intra-op threads for the run (default: the thread plan's, never more than now), restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count if count is not None else min(previous, thread_plan().torch))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic kernels for the run, restored afterwards (they are process-wide switches)."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    # Only on CUDA: PyTorch's CPU kernels used here are deterministic already (the resume test checks
    # it float for float), and the switch costs an import of torch._dynamo, seconds on a small CPU.
    if enabled and device.type == "cuda":
        # cuBLAS reads this when it initialises; without it deterministic mode refuses matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: bilinear upsampling's backward has no deterministic CUDA kernel, and refusing to
        # train over it would be worse than a warning.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        if enabled and device.type == "cuda":
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = previous[2], previous[3]


class _SignalStop:
    """Ctrl-C, SIGTERM and SIGHUP, while training: stop at the next step boundary, then deliver the signal.

    The first signal is only recorded: the loop checks `requested` after each step, saves and
    returns, and on leaving the block the signal goes to the handler it had before (the CLI's: one
    line, exit 130/143/129). Stopping between steps keeps the checkpoint consistent: an optimizer
    step is never half applied. A second signal is delivered at once. Only the main thread can
    handle signals; a signal the process ignores (a background job's SIGINT, nohup's SIGHUP) stays
    ignored.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> _SignalStop:  # noqa: PYI034 - not subclassed
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in _STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) not in (signal.SIG_IGN, None):
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        previous = self._restore()
        if exc_type is None and self.signum is not None:
            _deliver(self.signum, previous[self.signum], None)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            _deliver(signum, self._restore()[signum], frame)
            return
        self.signum = signum
        logger.warning("%s: stopping after this step to save the run (again to stop at once, losing the steps "
                       "since the last checkpoint)", signal.Signals(signum).name)

    def _restore(self) -> dict[int, Any]:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        return previous


def _deliver(signum: int, handler: Any, frame: FrameType | None) -> None:
    """Hand a signal to the handler it had before ours: raise KeyboardInterrupt, the CLI's Terminated ..."""
    if callable(handler):
        handler(signum, frame)
    else:  # SIG_DFL: the default action, with our handler gone
        signal.raise_signal(signum)


def _ignore_interrupts(worker_id: int) -> None:
    """DataLoader workers: a terminal's Ctrl-C reaches the whole process group; the main process decides."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Run:
    """One training run's objects and the steps that use them."""

    def __init__(self, config: TrainConfig, train_split: CityscapesDataset, val_split: CityscapesDataset,
                 device: torch.device) -> None:
        self.config, self.val_split, self.device = config, val_split, device
        self.out, self.data_root = config.out, train_split.root
        self.per_epoch = len(train_split) // config.batch
        self.total = config.iters if config.iters is not None else config.epochs * self.per_epoch  # type: ignore[operator]
        self.epochs = -(-self.total // self.per_epoch)
        self.model = build_model({"num_classes": config.num_classes, **config.model_options}).to(device)
        self.optimizer = _make_optimizer(config, self.model)
        self.scaler = torch.amp.GradScaler("cuda", enabled=config.amp)
        self.loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="sum")
        self.training_set = TrainingSet(train_split, config.train_size, config.train_crop, config.scale_range,
                                        config.flip, config.seed)
        self.state = _State()
        self._saved_at = time.perf_counter()
        logger.info("Training LRNNet on %s: %d train / %d val images; %d steps = %d epochs of %d batches of %d; "
                    "size %dx%d, crop %dx%d; %s", train_split.root, len(train_split), len(val_split), self.total,
                    self.epochs, self.per_epoch, config.batch, *config.train_size, *config.train_crop, device)

    # -- the loop ---------------------------------------------------------------------------------

    def loop(self, on_step: StepCallback | None, signals: _SignalStop) -> bool:
        """Train up to the last step; True when `on_step` or a signal stopped it early (last.pth saved)."""
        state = self.state
        while state.step < self.total:
            if self._train_epoch(on_step, signals):
                logger.info("Stopped at step %d of %d; continue with --resume %s", state.step, self.total,
                            self.out / LAST)
                self._save_last()
                return True
        return False

    def _train_epoch(self, on_step: StepCallback | None, signals: _SignalStop) -> bool:
        """The rest of the current epoch, finished (validated, logged) when complete; True when asked to stop."""
        state, config = self.state, self.config
        epoch = state.step // self.per_epoch
        epoch_start = epoch * self.per_epoch
        end = min(epoch_start + self.per_epoch, self.total)
        images, seconds, stopped = 0, 0.0, False
        bar = progress_bar(f"Epoch {epoch + 1}/{self.epochs}", total=end - epoch_start, unit="batch")
        bar.update(state.step - epoch_start)
        tick = time.perf_counter()
        for inputs, labels in self._batches(epoch, state.step - epoch_start):
            loss = self._step(inputs, labels, poly_lr(config.lr, state.step, self.total, config.poly_power))
            state.step_losses.append(loss)
            state.step += 1
            images += inputs.shape[0]
            seconds = time.perf_counter() - tick
            bar.update()
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{images / max(seconds, 1e-9):.1f}")
            stopped = on_step is not None and bool(on_step(state.step, loss))
            if stopped or signals.requested or state.step >= end:
                break
            self._checkpoint_if_due()  # mid-epoch; an epoch's end is checkpointed after its row is logged
        bar.close()
        if state.step == end:  # the epoch is complete
            self._finish_epoch(epoch, images, seconds)
        return (stopped or signals.requested) and state.step < self.total

    def _batches(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        sampler = EpochBatches(len(self.training_set), self.config.batch, self.config.seed, epoch, start)
        # An explicit generator: otherwise creating the iterator draws a worker seed from torch's
        # global RNG, which would shift dropout's random numbers between a resumed and a straight run.
        loader = torch.utils.data.DataLoader(self.training_set, batch_sampler=sampler,
                                             num_workers=self.config.workers, worker_init_fn=_ignore_interrupts,
                                             pin_memory=self.device.type == "cuda",
                                             generator=torch.Generator().manual_seed(self.config.seed))
        for inputs, labels in loader:
            yield inputs.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def _step(self, inputs: torch.Tensor, labels: torch.Tensor, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.config.amp):
            logits = self.model(inputs)
        # The mean over labelled pixels; a batch of only ignored pixels gives 0, not NaN.
        valid = (labels != IGNORE_INDEX).sum().clamp(min=1)
        loss = self.loss_fn(logits.float(), labels) / valid
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise self._diverged(value)
        return value

    def _diverged(self, loss: float) -> InputError:
        """A loss that is not finite: the settings' fault (the learning rate), so bad input, not a bug.

        Nothing is saved from here (the weights are already ruined); the last checkpoint, if the run
        made one, stays for a --resume with a lower --lr.
        """
        kept = self.out / LAST
        after = (f"{kept}, its last checkpoint, is kept" if kept.is_file()
                 else f"nothing was written to {self.out}")
        return InputError(f"the training loss became {loss} at step {self.state.step + 1} with --lr {self.config.lr}: "
                          f"the run diverged; lower --lr ({after})")

    # -- epochs, validation, checkpoints --------------------------------------------------------------

    def _finish_epoch(self, epoch: int, images: int, seconds: float) -> None:
        state, config = self.state, self.config
        losses = state.step_losses[epoch * self.per_epoch:state.step]
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": state.step,
            "lr": poly_lr(config.lr, state.step - 1, self.total, config.poly_power),
            "train_loss": float(np.mean(losses)),
            "images_per_s": images / seconds if seconds > 0 else None,  # of this process (after a resume: since)
            "train_seconds": seconds,
            "val_miou": None,
            "val_pixel_accuracy": None,
            "val_seconds": None,
        }
        if (epoch + 1) % config.val_every == 0 or state.step == self.total:
            report = self.validate()
            row.update(val_miou=_finite_or_none(report.miou), val_seconds=report.seconds,
                       val_pixel_accuracy=_finite_or_none(report.pixel_accuracy))
            summary = report.to_dict()
            state.last_report = {"epoch": epoch + 1, **{k: summary[k] for k in
                                                        ("miou", "pixel_accuracy", "per_class_iou", "images")}}
        state.history.append(row)
        improved = row["val_miou"] is not None and row["val_miou"] > state.best_miou
        if improved:
            state.best_miou, state.best_epoch, state.best_checkpoint = row["val_miou"], epoch + 1, self.out / BEST
        logger.info("epoch %d/%d: loss %.4f, %s img/s, val mIoU %s%s", epoch + 1, self.epochs, row["train_loss"],
                    "n/a" if row["images_per_s"] is None else f"{row['images_per_s']:.1f}",
                    "n/a" if row["val_miou"] is None else f"{100 * row['val_miou']:.1f}%",
                    " (best)" if improved else "")
        if row["val_miou"] is not None or state.step == self.total:
            self._save_last()
        else:
            self._checkpoint_if_due()
        if improved:
            self._save(self.out / BEST)

    def validate(self) -> Any:
        """mIoU on the validation split through lrnnet.eval, the code every backend is scored with."""
        from lrnnet.eval import evaluate
        from lrnnet.runtime.torch_runner import TorchRunner, model_info_for

        info = model_info_for(self.model, self.config.train_size)
        # The runner puts the model in eval mode and back in training mode on close.
        with TorchRunner(model=self.model, info=info, device=str(self.device), fp16=self.config.amp) as runner:
            return evaluate(runner, self.val_split, batch_size=self.config.val_batch, desc="Validating")

    def _checkpoint_if_due(self) -> None:
        if time.perf_counter() - self._saved_at >= CHECKPOINT_EVERY_S:
            self._save_last()

    def _save_last(self) -> None:
        """last.pth with the files that describe it (config.json, log.csv, steps.csv): a resumable run."""
        self._save(self.out / LAST)
        self._write_config()
        self._write_logs()

    def _save(self, path: Path) -> None:
        state = self.state
        self._saved_at = time.perf_counter()
        rng: dict[str, Any] = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state_all()
        save_checkpoint(path, self.model,
                        optimizer=self.optimizer.state_dict(),
                        scaler=self.scaler.state_dict(),
                        epoch=state.step // self.per_epoch,  # completed epochs
                        step=state.step,
                        total_steps=self.total,
                        metrics=self._metrics(),
                        best_miou=state.best_miou if state.best_epoch is not None else None,
                        best_epoch=state.best_epoch,
                        # absolute: a resume from another folder (or working directory) still finds it
                        best_checkpoint=None if state.best_checkpoint is None else str(state.best_checkpoint.resolve()),
                        history=state.history,
                        step_losses=state.step_losses,
                        last_report=state.last_report,
                        rng=rng,
                        input_size=list(self.config.train_size),
                        sizes={"train_size": list(self.config.train_size), "train_crop": list(self.config.train_crop),
                               "val_size": list(self.config.train_size)},  # what lrnnet-export defaults to
                        train_config=self.config.to_dict(),
                        lrnnet_version=lrnnet.__version__)

    def _metrics(self) -> dict[str, Any]:
        last = next((row for row in reversed(self.state.history) if row["val_miou"] is not None), None)
        return {"val_miou": None if last is None else last["val_miou"],
                "val_pixel_accuracy": None if last is None else last["val_pixel_accuracy"],
                "val_epoch": None if last is None else last["epoch"],
                "train_loss": self.state.history[-1]["train_loss"] if self.state.history else None}

    def resume(self, path: Path, payload: dict[str, Any]) -> None:
        """Continue from `payload`, a checkpoint of this trainer (checked by _check_resumable)."""
        changed = changed_settings(payload["train_config"], self.config)
        if changed:
            logger.warning("Resuming with other settings than the checkpoint's run (%s): training continues, "
                           "but not as an exact continuation", "; ".join(changed))
        step = int(payload["step"])
        if step >= self.total:
            raise InputError(f"--resume {path} already finished {step} of this run's {self.total} steps; "
                             "raise --epochs or --iters to train further")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        torch.set_rng_state(payload["rng"]["torch"])
        if self.device.type == "cuda" and "cuda" in payload["rng"]:
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])
        best = payload.get("best_miou")
        self.state = _State(step=step, best_miou=-math.inf if best is None else float(best),
                            best_epoch=payload.get("best_epoch"), best_checkpoint=_find_best_weights(path, payload),
                            history=list(payload.get("history") or []),
                            step_losses=[float(v) for v in payload.get("step_losses") or []][:step],
                            last_report=payload.get("last_report"))
        logger.info("Resuming from %s at step %d of %d (epoch %d)", path, step, self.total, step // self.per_epoch + 1)

    # -- logs ---------------------------------------------------------------------------------------

    def _write_config(self) -> None:
        write_json_atomic(self.out / "config.json", {
            **self.config.to_dict(), "data_root": str(self.data_root), "total_steps": self.total,
            "steps_per_epoch": self.per_epoch, "model_config": self.model.config,
            "lrnnet_version": lrnnet.__version__, "torch_version": torch.__version__})

    def _write_logs(self) -> None:
        _write_csv(self.out / "log.csv", self.state.history)
        lrs = (poly_lr(self.config.lr, i, self.total, self.config.poly_power) for i in range(self.state.step))
        _write_csv(self.out / "steps.csv", [{"step": i + 1, "epoch": i // self.per_epoch + 1, "lr": lr, "loss": loss}
                                            for i, (lr, loss) in enumerate(zip(lrs, self.state.step_losses))])

    def write_plot(self) -> None:
        """Loss per step (and per epoch) and validation mIoU per epoch, as a PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        state = self.state
        figure = Figure(figsize=(10, 4), dpi=100)
        FigureCanvasAgg(figure)  # Agg without touching pyplot's global backend
        loss_axes, miou_axes = figure.subplots(1, 2)
        steps = np.arange(1, len(state.step_losses) + 1)
        loss_axes.plot(steps, state.step_losses, lw=0.6, alpha=0.5, label="per step")
        if state.history:
            loss_axes.plot([row["step"] for row in state.history], [row["train_loss"] for row in state.history],
                           marker="o", label="epoch mean")
        loss_axes.set(xlabel="step", ylabel="cross-entropy", title="training loss")
        loss_axes.legend()
        validated = [row for row in state.history if row["val_miou"] is not None]
        miou_axes.plot([row["epoch"] for row in validated], [100 * row["val_miou"] for row in validated], marker="o")
        miou_axes.set(xlabel="epoch", ylabel="mIoU %", title="validation mIoU (lrnnet.eval)")
        miou_axes.grid(alpha=0.3)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        write_bytes_atomic(self.out / "curves.png", buffer.getvalue())

    def summary(self, seconds: float) -> dict[str, Any]:
        state = self.state
        return {"steps": state.step, "total_steps": self.total, "epochs_completed": state.step // self.per_epoch,
                "best_miou": state.best_miou if state.best_epoch is not None else None,
                "best_epoch": state.best_epoch, "final_metrics": self._metrics(), "last_validation": state.last_report,
                "seconds": seconds, "device": str(self.device),
                "input_size": list(self.config.train_size), "checkpoints": {"last": LAST, "best": None if state.best_checkpoint is None else str(state.best_checkpoint)}}


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    write_bytes_atomic(path, text.getvalue().encode())
