"""benchmarks/operating_rules.py: a threshold rule is chosen on one half of a validation split and scored on the
other, against the same half with every cell computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def rules():
    return load_benchmark("operating_rules")


def write_curves(path: Path) -> None:
    """200 videos: every cell and 0.3 get them all right, 0.5 misses two, 0.7 misses sixty; cheaper as it rises."""
    thresholds = np.array([0.0, 0.3, 0.5, 0.7])
    correct = np.ones((4, 200), dtype=bool)
    correct[2, :2] = False
    correct[3, :60] = False
    gflops = np.repeat(np.array([[10.0], [6.0], [4.0], [2.0]]), 200, axis=1)
    path.parent.mkdir(parents=True)
    np.savez_compressed(path, thresholds=thresholds, correct=correct, gflops=gflops, labels=np.zeros(200))


def test_each_rule_is_scored_on_the_half_it_did_not_choose_on(rules, tmp_path, capsys):
    path = tmp_path / "toy" / "seed-0" / "x5" / "adamml" / "val-curves.npz"
    write_curves(path)
    result = rules.cross_validate(path, repeats=300, rng=np.random.default_rng(0))
    # a 2-point margin always allows 0.5's two misses on the choosing half, so 0.3's neighbourhood qualifies
    # and 0.5's (beside 0.7) does not: 0.3 on every halving, nothing lost, 60 % of the cost
    assert result["margin 2, +-1"] == pytest.approx((0.0, 0.6))
    # the constant 0.5 loses its two videos' worth, about one point of 100 held-out videos, at 40 %
    gain, share = result["fixed 0.5"]
    assert gain == pytest.approx(-1.0, abs=0.25) and share == pytest.approx(0.4)
    # no margin keeps every cell wherever the choosing half holds a miss at 0.5 (0.3's neighbour)
    assert result["margin 0, +-1"][1] > 0.6
    assert rules.main([str(tmp_path), "--repeats", "20"]) == 0
    printed = capsys.readouterr().out
    assert "| margin 1, +-1 |" in printed and "toy seed-0" in printed
