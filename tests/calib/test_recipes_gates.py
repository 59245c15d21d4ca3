"""The precision-per-target table (lrnnet.calib.recipes): its lookups, and what each target's recipe says."""

from __future__ import annotations

import pytest

from lrnnet.calib.recipes import RECIPES, TARGETS, TENSORRT_FALLBACK_INT8, purpose_of, recipes_for
from lrnnet.export.metadata import ENGINE_TARGETS


def test_every_target_has_its_recipes():
    assert TARGETS == ("onnxruntime", "tensorrt") and set(RECIPES) == set(TARGETS)
    assert set(TARGETS) < set(ENGINE_TARGETS)  # what metadata may record
    for target in TARGETS:
        recipes = recipes_for(target)
        assert recipes is RECIPES[target]
        assert recipes.target == recipes.fp16.target == recipes.int8.target == target


def test_unknown_target_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^unknown precision target 'gpu'; known: onnxruntime, tensorrt$"):
        recipes_for("gpu")


def test_activation_symmetry_per_target():
    # TensorRT needs zero points of 0; ONNX Runtime's CPU fusions need uint8 asymmetric activations.
    assert recipes_for("tensorrt").int8.symmetric_activations is True
    assert TENSORRT_FALLBACK_INT8.symmetric_activations is True
    assert recipes_for("onnxruntime").int8.symmetric_activations is False
    assert all(recipe.int8.float_head for recipe in RECIPES.values())


@pytest.mark.parametrize("target", TARGETS)
def test_purpose_of_each_precision(target):
    recipes = recipes_for(target)
    assert purpose_of(target, "int8") == recipes.int8.purpose
    assert purpose_of(target, "int8", TENSORRT_FALLBACK_INT8) == TENSORRT_FALLBACK_INT8.purpose
    assert purpose_of(target, "fp16") == recipes.fp16.purpose
    assert purpose_of(target, "fp32") == recipes.fp32_purpose
    assert len({purpose_of(target, p) for p in ("fp32", "fp16", "int8")}) == 3
    with pytest.raises(ValueError, match="unknown precision target"):
        purpose_of("cuda", "fp16")
