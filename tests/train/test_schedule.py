"""The poly learning-rate schedule."""

import pytest

from lrnnet.train.schedule import poly_lr


def test_poly_starts_at_base_and_decays_to_zero():
    assert poly_lr(5e-4, 0, 100) == 5e-4
    assert poly_lr(5e-4, 50, 100, power=0.9) == pytest.approx(5e-4 * 0.5 ** 0.9)
    assert poly_lr(5e-4, 100, 100) == 0.0


def test_power_one_is_linear():
    assert [poly_lr(1.0, s, 4, power=1.0) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]


@pytest.mark.parametrize("step,total", [(-1, 10), (11, 10), (0, 0)])
def test_out_of_range_steps_are_refused(step, total):
    with pytest.raises(ValueError):
        poly_lr(1.0, step, total)
