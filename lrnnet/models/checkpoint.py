"""Build LRNNet from a config, and save/load checkpoints with errors that say what is wrong.

Checkpoint format (what ``lrnnet-train`` writes, and ``save_checkpoint``):
``{"model": state_dict, "model_config": LRNNet.config, ...any extra keys}``.
``load_checkpoint`` also takes a plain state dict; without a config it infers ``num_classes``
from the classifier's weight and uses the defaults for the rest.

Integrity: ``save_checkpoint`` stores ``"weights_sha256"``, a SHA-256 over the state dict's names,
dtypes, shapes and bytes; ``load_checkpoint`` recomputes it and refuses a mismatch (bytes flipped
inside a weight). A foreign checkpoint without one is accepted with a one-line note.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lrnnet._io import atomic_output
from lrnnet.errors import InputError
from lrnnet.log import note
from lrnnet.models.lrnnet import LRNNet

__all__ = ["DIGEST_KEY", "SIZES_KEY", "build_model", "check_finite_weights", "checkpoint_sizes", "load_checkpoint",
           "save_checkpoint", "weights_digest"]

DIGEST_KEY = "weights_sha256"

_CLASSIFIER_WEIGHT = "classifier.weight"
_SHOWN_KEYS = 3  # how many missing/unexpected keys an error message names


def build_model(config: Mapping[str, Any]) -> LRNNet:
    """An LRNNet from a config dict (``LRNNet.config``); unknown keys or bad values raise InputError."""
    if not isinstance(config, Mapping):
        raise InputError(f"model config must be a dict, got {type(config).__name__}")
    try:
        return LRNNet(**dict(config))
    except TypeError as exc:  # unknown or misspelt key
        raise InputError(f"bad model config {dict(config)!r}: {exc}") from exc
    except ValueError as exc:  # a known key with a bad value
        raise InputError(f"bad model config: {exc}") from exc


def save_checkpoint(path: str | os.PathLike[str], model: LRNNet, **extra: Any) -> None:
    """Write ``{"model": state_dict, "model_config": model.config, **extra}`` to ``path`` atomically."""
    reserved = {"model", "model_config", DIGEST_KEY} & extra.keys()
    if reserved:
        raise ValueError(f"extra keys {sorted(reserved)} are reserved for the model itself")
    state_dict = model.state_dict()
    payload = {"model": state_dict, "model_config": dict(model.config), DIGEST_KEY: weights_digest(state_dict),
               **extra}
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu", **overrides: Any) -> LRNNet:
    """An LRNNet in eval mode with the weights in ``path``.

    ``overrides`` replace config entries that do not change the weights' shapes, e.g.
    ``svd="exact"`` or ``power_iterations=30`` (both SVD methods share the same parameters).
    """
    path = Path(path)
    obj = _read_torch_file(path, map_location)
    state_dict, config = _split_checkpoint(obj, path)
    if config is None:
        config = {"num_classes": _infer_num_classes(state_dict, path)}
    model = build_model({**config, **overrides})
    _load_state_dict(model, state_dict, path)
    _check_digest(obj, state_dict, path)  # after the shape checks: a foreign file's note only when it loads
    check_finite_weights(state_dict, str(path))  # after the digest: damaged bytes are said as such
    return model.eval()


def check_finite_weights(state_dict: Mapping[str, torch.Tensor], owner: str) -> None:
    """InputError naming the tensors with NaN/Inf: such weights run, but every score of them is meaningless."""
    broken = [name for name, tensor in state_dict.items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise InputError(f"{owner} has NaN/Inf weights in {len(broken)} tensors, e.g. {broken[:_SHOWN_KEYS]} "
                         "(a diverged training run?); use a healthy checkpoint")


def _read_torch_file(path: Path, map_location: Any) -> Any:
    if not path.exists():
        raise InputError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise InputError(f"checkpoint is not a file: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # junk bytes raise anything from IndexError to UnicodeDecodeError
        # torch 2.6+ blames weights_only for any unpickling failure; only a torch.save archive
        # (a zip file) can really hold pickled objects beyond tensors.
        if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc) and zipfile.is_zipfile(path):
            raise InputError(
                f"{path} holds objects other than tensors and plain containers; refusing to unpickle them "
                f"(only weights are loaded, with torch.load(weights_only=True))"
            ) from exc
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, pickle.UnpicklingError):  # torch's text is about weights_only, not this file
            first_line = ""
        # Junk bytes give bare texts such as KeyError's "105": the type says what the number is.
        first_line = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
        raise InputError(
            f"cannot read {path} as a PyTorch checkpoint (corrupt, truncated, or not a torch.save file): "
            f"{first_line}"
        ) from exc


def _split_checkpoint(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state_dict, model_config or None) from a training checkpoint or a plain state dict."""
    if not isinstance(obj, Mapping):
        raise InputError(f"{path} holds a {type(obj).__name__}, not a state dict or a training checkpoint")
    if "model" in obj:
        state_dict, config = obj["model"], obj.get("model_config")
        if config is not None and not isinstance(config, Mapping):
            raise InputError(f"{path}: 'model_config' is a {type(config).__name__}, not a dict")
    else:
        state_dict, config = obj, None
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise InputError(f"{path} holds no state dict (expected a dict of tensors, or {{'model': ...}})")
    not_tensors = [
        k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)
    ]
    if not_tensors:
        raise InputError(
            f"{path} is not a state dict: {len(not_tensors)} entries are not named tensors, "
            f"e.g. {not_tensors[:_SHOWN_KEYS]}"
        )
    return dict(state_dict), (dict(config) if config is not None else None)


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict: every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _check_digest(obj: Any, state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    recorded = obj.get(DIGEST_KEY) if isinstance(obj, Mapping) and "model" in obj else None
    if recorded is None:  # accepted, and said once the command succeeds: nothing vouches for these weights
        note(f"{path} carries no weights digest (not written by lrnnet): its integrity is not checked")
        return
    if not isinstance(recorded, str) or recorded != weights_digest(state_dict):
        raise InputError(f"{path} is corrupt: its weights do not match the SHA-256 recorded when it was saved "
                         "(damaged on disk or in transfer); use another copy or retrain")


def _infer_num_classes(state_dict: Mapping[str, torch.Tensor], path: Path) -> int:
    weight = state_dict.get(_CLASSIFIER_WEIGHT)
    if weight is None or weight.dim() != 4:
        raise InputError(
            f"{path} is not an LRNNet state dict: no {_CLASSIFIER_WEIGHT!r} (N, C, 1, 1) "
            f"(first keys: {list(state_dict)[:_SHOWN_KEYS]})"
        )
    return int(weight.shape[0])


def _load_state_dict(model: LRNNet, state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys, e.g. {missing[:_SHOWN_KEYS]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[:_SHOWN_KEYS]}")
        raise InputError(f"{path} does not hold weights of this LRNNet: {'; '.join(parts)}")
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if state_dict[k].shape != v.shape
    ]
    if mismatched:
        raise InputError(
            f"{path}: {len(mismatched)} weights have other shapes than the model "
            f"(config {model.config}): {'; '.join(mismatched[:_SHOWN_KEYS])}"
        )
    model.load_state_dict(state_dict)


SIZES_KEY = "sizes"  # {"train_size": [h, w], "train_crop": [h, w], "val_size": [h, w]}, written by lrnnet-train


def checkpoint_sizes(path: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """The image sizes a checkpoint was trained and validated at, as (height, width); {} when it has none.

    ``train_size`` is the scale the training scenes were resized to (crops are cut from it, so it is
    the scale objects were learned at), ``val_size`` the size it was validated at: the size to
    export at. Older lrnnet-train checkpoints have only ``input_size`` (both, by then).
    """
    obj = _read_torch_file(Path(path), "cpu")
    if not isinstance(obj, Mapping):
        return {}
    sizes = obj.get(SIZES_KEY)
    if not isinstance(sizes, Mapping):
        legacy = obj.get("input_size")
        sizes = {"train_size": legacy, "val_size": legacy} if legacy is not None else {}
    found = {}
    for name, value in sizes.items():
        if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
            found[str(name)] = (int(value[0]), int(value[1]))
    return found
