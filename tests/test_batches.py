"""Batch planning: deterministic, grouped by area and date; resume only with the same size."""

from __future__ import annotations

import numpy as np
import pytest

from gedidata.batches import batch_name, batch_order, complete_batches, plan_batches
from gedidata.errors import InputError


def test_order_groups_area_then_date_then_shot():
    lon = np.array([8.5, 8.2, -58.0, 8.9, 8.1])
    lat = np.array([47.5, 47.1, -5.0, 47.9, 47.2])
    day = np.array([900.0, 905.0, 900.0, 930.0, 901.0])  # days since 2018-01-01
    shot = np.array([5, 4, 3, 2, 1])
    order = batch_order(lon, lat, day, shot)
    # cell (-58, -5) first; then cell (8, 47): window 45 (days 900-919) by 0.1° sub-cell
    # row (47.1, 47.2, 47.5), then window 46
    assert order.tolist() == [2, 1, 4, 0, 3]


def test_shot_number_breaks_ties_within_a_sub_cell():
    order = batch_order(np.array([8.01, 8.02]), np.array([47.01, 47.02]), np.zeros(2),
                        np.array([9, 3]))  # fmt: skip
    assert order.tolist() == [1, 0]


def test_plan_is_exact_cover():
    order = np.random.default_rng(0).permutation(2503)
    batches = plan_batches(order, 1000)
    assert [len(b) for b in batches] == [1000, 1000, 503]
    assert np.array_equal(np.concatenate(batches), order)
    with pytest.raises(ValueError):
        plan_batches(order, 0)


def test_complete_batches_and_size_mismatch(tmp_path):
    assert complete_batches(tmp_path / "missing", 1000) == set()
    for index in (0, 2):
        (tmp_path / batch_name(1000, index)).write_bytes(b"x")
    (tmp_path / ".batch_1000_1.tmp-77.h5").write_bytes(b"half")  # interrupted write
    assert complete_batches(tmp_path, 1000) == {0, 2}
    with pytest.raises(InputError) as error:
        complete_batches(tmp_path, 500)
    message = str(error.value)
    assert "size 1000" in message and "--batch-size 500" in message and str(tmp_path) in message
