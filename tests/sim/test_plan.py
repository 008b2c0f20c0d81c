"""The row plan: exact split and class counts by construction, hosts disjoint across splits."""

from __future__ import annotations

import numpy as np
import pytest

from darkhaloscope.sim.build import make_plan
from darkhaloscope.sim.hosts import exact_counts
from darkhaloscope.sim.simconfig import SimConfig


@pytest.mark.parametrize("rows, controls", [(6, 0.5), (7, 0.1), (100, 0.3), (1001, 0.5), (20000, 0.25)])
def test_every_split_gets_its_share_of_controls(rows, controls):
    cfg = SimConfig(controls=controls)
    plan = make_plan(rows, 0, cfg)
    sizes = np.bincount(plan.split_idx, minlength=3)
    assert sizes.sum() == rows and (sizes >= 2).all()
    for k in range(3):
        ctrl = int(plan.is_control[plan.split_idx == k].sum())
        assert 1 <= ctrl <= sizes[k] - 1
        assert abs(ctrl - controls * sizes[k]) <= 1
    if rows >= 1000:
        np.testing.assert_allclose(sizes / rows, [0.7, 0.15, 0.15], atol=2 / rows)
    hosts = [set(plan.host_idx[plan.split_idx == k].tolist()) for k in range(3)]
    assert not (hosts[0] & hosts[1]) and not (hosts[0] & hosts[2]) and not (hosts[1] & hosts[2])


def test_plan_is_a_function_of_the_seed():
    a, b, c = make_plan(500, 1, SimConfig()), make_plan(500, 1, SimConfig()), make_plan(500, 2, SimConfig())
    assert (a.split_idx == b.split_idx).all() and (a.is_control == b.is_control).all()
    assert (a.is_control != c.is_control).any()


@pytest.mark.parametrize("n, fracs, minimum, expected", [
    (10, {"a": 0.7, "b": 0.15, "c": 0.15}, 1, {"a": 7, "b": 2, "c": 1}),
    (6, {"a": 0.7, "b": 0.15, "c": 0.15}, 1, {"a": 4, "b": 1, "c": 1}),
    (6, {"a": 0.7, "b": 0.15, "c": 0.15}, 2, {"a": 2, "b": 2, "c": 2}),
    (3, {"a": 1.0, "b": 1.0, "c": 1.0}, 0, {"a": 1, "b": 1, "c": 1}),
])
def test_exact_counts_by_largest_remainder(n, fracs, minimum, expected):
    got = exact_counts(n, fracs, minimum)
    assert sum(got.values()) == n and min(got.values()) >= minimum
    assert got == expected
