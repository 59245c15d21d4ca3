"""The training loop: it learns, it resumes exactly, it writes what it promises."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lrnnet.errors import InputError
from lrnnet.models import load_checkpoint
from lrnnet.train import BEST, LAST, TrainConfig, train, trainer
from lrnnet.train.data import prepare_synthetic

sys.path.insert(0, str(Path(__file__).parent))  # the helpers live beside this file
from train_helpers import majority_class_miou


@pytest.fixture
def handful(tmp_path):
    """Four synthetic scenes whose val split is the train split itself: a test of fitting, not generalising."""
    root = prepare_synthetic(tmp_path / "handful", (32, 64), {"train": 4, "val": 1}, seed=3)
    shutil.rmtree(root / "leftImg8bit" / "val")
    shutil.rmtree(root / "gtFine" / "val")
    shutil.copytree(root / "leftImg8bit" / "train", root / "leftImg8bit" / "val")
    shutil.copytree(root / "gtFine" / "train", root / "gtFine" / "val")
    return root


@pytest.mark.slow
def test_a_short_run_overfits_a_handful_of_images(handful, tmp_path):
    config = TrainConfig(data=handful, out=tmp_path / "run", size=(32, 64), scale_range=(1.0, 1.0), flip=False,
                         batch=4, iters=60, lr=5e-3, val_every=30, device="cpu", threads=1)
    result = train(config)
    losses = result.step_losses
    assert len(losses) == 60 and result.steps == 60
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5])
    chance = majority_class_miou(handful)
    assert result.final_miou > max(0.25, 4 * chance), (result.final_miou, chance)
    validated = [row["val_miou"] for row in result.history if row["val_miou"] is not None]
    assert validated[-1] > validated[0]


def _tiny(root, out, **kwargs) -> TrainConfig:
    options = {"size": (32, 64), "batch": 2, "iters": 5, "device": "cpu", "threads": 1, **kwargs}
    return TrainConfig(data=root, out=out, **options)


def test_resume_continues_exactly_as_an_uninterrupted_run(tmp_path):
    root = prepare_synthetic(tmp_path / "tiny", (32, 64), {"train": 4, "val": 1}, seed=0)
    straight = train(_tiny(root, tmp_path / "straight"))  # 2 steps per epoch: epochs end at 2, 4, and 5

    stopped = train(_tiny(root, tmp_path / "split"), on_step=lambda step, loss: step == 3)  # mid-epoch 2
    assert stopped.stopped_early and stopped.steps == 3
    assert stopped.step_losses == straight.step_losses[:3]
    resumed = train(_tiny(root, tmp_path / "split", resume=tmp_path / "split" / LAST))
    assert resumed.steps == 5 and not resumed.stopped_early
    assert resumed.step_losses == straight.step_losses  # exact, float for float
    assert [row["val_miou"] for row in resumed.history] == [row["val_miou"] for row in straight.history]
    a, b = (torch.load(r.last, weights_only=True)["model"] for r in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)

    # Ctrl-C during step 3 (the signal arrives while it runs): the step completes, the run is saved, and
    # KeyboardInterrupt goes on as before; the checkpoint resumes as exactly as one stopped by on_step.
    def interrupt_at_3(step, loss):
        if step == 3:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(_tiny(root, tmp_path / "interrupted"), on_step=interrupt_at_3)
    assert torch.load(tmp_path / "interrupted" / LAST, weights_only=True)["step"] == 3
    assert {"config.json", "log.csv", "steps.csv", "summary.json"} <= {p.name for p in (tmp_path / "interrupted").iterdir()}
    after_signal = train(_tiny(root, tmp_path / "interrupted", resume=tmp_path / "interrupted" / LAST))
    assert after_signal.step_losses == straight.step_losses
    c = torch.load(after_signal.last, weights_only=True)["model"]
    assert all(torch.equal(a[k], c[k]) for k in a)

    # The straight run's files: what the issue promises, readable by the other stages.
    out = straight.out
    payload = torch.load(out / LAST, weights_only=True)
    assert {"model", "model_config", "optimizer", "epoch", "step", "metrics", "rng", "train_config"} <= set(payload)
    assert payload["step"] == 5 and payload["epoch"] == 2 and payload["model_config"]["num_classes"] == 19
    assert payload["metrics"]["val_miou"] == straight.history[-1]["val_miou"]
    assert load_checkpoint(out / BEST).config == load_checkpoint(out / LAST).config
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] and rows[-1]["val_miou"] != ""
    with open(out / "steps.csv") as f:
        assert [float(r["loss"]) for r in csv.DictReader(f)] == pytest.approx(straight.step_losses)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "summary.json").read_text())["steps"] == 5
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporaries

    # A second run into the same folder must say --resume; a finished run cannot be resumed further.
    with pytest.raises(InputError, match="already holds a training run"):
        train(_tiny(root, out))
    with pytest.raises(InputError, match="already finished 5"):
        train(_tiny(root, out, resume=out / LAST))


def test_the_same_seed_gives_the_same_run_and_another_seed_another(tmp_path):
    root = prepare_synthetic(tmp_path / "tiny", (32, 64), {"train": 4, "val": 1}, seed=0)
    first = train(_tiny(root, tmp_path / "a", iters=2, val_every=10))
    again = train(_tiny(root, tmp_path / "b", iters=2, val_every=10))
    other = train(_tiny(root, tmp_path / "c", iters=2, val_every=10, seed=1))
    assert first.step_losses == again.step_losses
    assert first.step_losses != other.step_losses


def test_resume_refuses_checkpoints_of_other_models(tmp_path):
    root = prepare_synthetic(tmp_path / "tiny", (32, 64), {"train": 4, "val": 1}, seed=0)
    foreign = tmp_path / "foreign.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), foreign)
    with pytest.raises(InputError, match="not an LRNNet state dict"):
        train(_tiny(root, tmp_path / "a", resume=foreign))
    from lrnnet.models import LRNNet, save_checkpoint

    other_classes = tmp_path / "other.pth"
    save_checkpoint(other_classes, LRNNet(num_classes=7), optimizer={}, step=1, train_config={}, rng={})
    with pytest.raises(InputError, match="resume with the same model options"):
        train(_tiny(root, tmp_path / "b", resume=other_classes))
    weights_only = tmp_path / "weights.pth"
    save_checkpoint(weights_only, LRNNet())
    with pytest.raises(InputError, match="no training state"):
        train(_tiny(root, tmp_path / "c", resume=weights_only))


def test_a_split_smaller_than_a_batch_is_refused(tmp_path):
    root = prepare_synthetic(tmp_path / "tiny", (32, 64), {"train": 1, "val": 1}, seed=0)
    with pytest.raises(InputError, match="fewer than --batch 2"):
        train(_tiny(root, tmp_path / "a"))


def test_sigterm_saves_the_run_then_reaches_the_commands_handler(tmp_path):
    """The CLI turns SIGTERM into Terminated (exit 143): it still gets it, after the checkpoint."""
    from lrnnet.cli._common import Terminated, _signals_unwind

    root = prepare_synthetic(tmp_path / "tiny", (32, 64), {"train": 4, "val": 1}, seed=0)
    with _signals_unwind(), pytest.raises(Terminated):
        train(_tiny(root, tmp_path / "run"), on_step=lambda step, loss: step == 1 and signal.raise_signal(signal.SIGTERM))
    assert torch.load(tmp_path / "run" / LAST, weights_only=True)["step"] == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the trainer's handlers are gone


def test_a_checkpoint_is_due_within_an_epoch_too(tmp_path, monkeypatch):
    """An epoch of real data is long: the time-based checkpoint comes after any step, not only at epoch ends."""
    root = prepare_synthetic(tmp_path / "tiny", (32, 64), {"train": 4, "val": 1}, seed=0)
    monkeypatch.setattr(trainer, "CHECKPOINT_EVERY_S", 0.0)

    def crash_at_4(step, loss):
        if step == 4:
            raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError, match="went away"):
        train(_tiny(root, tmp_path / "run", val_every=10), on_step=crash_at_4)
    assert torch.load(tmp_path / "run" / LAST, weights_only=True)["step"] == 3  # mid-epoch 2 (2 steps an epoch)


def test_a_diverged_run_is_bad_input_and_leaves_nothing_before_its_first_checkpoint(tmp_path):
    root = prepare_synthetic(tmp_path / "tiny", (32, 64), {"train": 4, "val": 1}, seed=0)
    with pytest.raises(InputError, match=r"loss became nan at step \d with --lr 1e\+30: the run diverged; lower --lr "
                                         r"\(nothing was written to"):
        train(_tiny(root, tmp_path / "run", lr=1e30))
    assert not (tmp_path / "run").exists()


def _checkpoint(tmp_path) -> Path:
    """A real training checkpoint (2 steps, stopped after the first epoch's validation)."""
    root = prepare_synthetic(tmp_path / "tiny", (32, 64), {"train": 4, "val": 1}, seed=0)
    train(_tiny(root, tmp_path / "run"), on_step=lambda step, loss: step == 2)
    return root


def _damaged(payload, part):
    if part == "step":
        payload["step"] = -5
    elif part == "rng":
        payload["rng"] = {"torch": torch.zeros(3)}
    elif part == "optimizer groups":
        payload["optimizer"] = {"state": {}, "param_groups": []}
    elif part == "optimizer shapes":
        state = payload["optimizer"]["state"]
        first = next(iter(state))
        state[first]["exp_avg"] = torch.zeros(2, 2)
    elif part == "best_epoch":
        payload["best_epoch"] = "two"
    return payload


@pytest.mark.parametrize("part,message", [
    ("step", r"step -5 is not an integer >= 0"),
    ("rng", r"rng\['torch'\] is not a torch RNG state"),
    ("optimizer groups", r"optimizer: "),
    ("optimizer shapes", r"optimizer state of shape other than its parameter's"),
    ("best_epoch", r"best_epoch 'two'"),
])
def test_resume_refuses_a_damaged_training_state_in_one_line(part, message, tmp_path):
    root = _checkpoint(tmp_path)
    payload = _damaged(torch.load(tmp_path / "run" / LAST, weights_only=True), part)
    damaged = tmp_path / "damaged.pth"
    torch.save(payload, damaged)
    with pytest.raises(InputError, match=r"--resume .*damaged.pth: its training state is damaged \(" + message):
        train(_tiny(root, tmp_path / "again", resume=damaged))
    assert not (tmp_path / "again").exists()


def test_resuming_into_another_folder_carries_the_best_and_where_its_weights_are(tmp_path):
    root = _checkpoint(tmp_path)  # run/: epoch 1 validated, its best.pth
    first = torch.load(tmp_path / "run" / BEST, weights_only=True)
    stop_at_3 = lambda step, loss: step == 3  # before the next validation
    moved = train(_tiny(root, tmp_path / "moved", resume=tmp_path / "run" / LAST), on_step=stop_at_3)
    assert (moved.best_epoch, moved.best_miou) == (1, first["best_miou"])
    assert moved.best == tmp_path / "run" / BEST and not (tmp_path / "moved" / BEST).exists()
    assert json.loads((tmp_path / "moved" / "summary.json").read_text())["checkpoints"]["best"] == str(moved.best)
    # moved/last.pth says where the best is: a resume from it, into a third folder, finds it again.
    again = train(_tiny(root, tmp_path / "third", resume=tmp_path / "moved" / LAST), on_step=lambda s, l: s == 4)
    assert again.best_epoch is not None and again.best is not None
    assert again.best in {tmp_path / "run" / BEST, tmp_path / "third" / BEST}  # epoch 2 may have improved
    # The weights gone: the metric carries on, no file is claimed.
    (tmp_path / "run" / BEST).unlink()
    orphan = train(_tiny(root, tmp_path / "orphan", resume=tmp_path / "moved" / LAST, val_every=10),
                   on_step=lambda step, loss: step == 4)  # epoch 2 ends, not validated
    assert orphan.best_epoch == 1 and orphan.best is None
