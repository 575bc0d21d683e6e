"""The operating point: the rule that reads a threshold off a validation curve, its record in the checkpoint, and
the commands that decide at it (eval, predict, bench, export) unless told another threshold."""

from __future__ import annotations

import json

import pytest
import torch

from adamml.cli import main
from adamml.inference.checkpoint import load_trained
from adamml.inference.calibration import calibrate
from adamml.inference.evaluation import evaluate
from adamml.inference.gflops import video_gmacs
from adamml.inference.operating_point import CurvePoint, OperatingPoint, allowed_drop, at_threshold, choose
from adamml.inference.prediction import load_predictor
from tests.conftest import train_cli


def _curve(points: list[tuple[float, float, float]]) -> list[CurvePoint]:
    """(threshold, score, gflops) -> curve points with the worst-of-neighbours score, as `threshold_curve` makes."""
    scores = [s for _t, s, _g in points]
    return [CurvePoint(t, s, min(scores[max(0, i - 1):i + 2]), g, {}) for i, (t, s, g) in enumerate(points)]


CURVE = _curve([(0.0, 90.0, 10.0), (0.1, 90.0, 8.0), (0.2, 89.5, 6.0), (0.3, 80.0, 5.0), (0.4, 90.0, 4.0),
                (0.5, 70.0, 3.0), (0.6, 60.0, 2.0)])


def test_accuracy_target_takes_the_cheapest_threshold_whose_neighbourhood_keeps_the_score():
    # 200 videos: a margin of 1 point allows 2 wrong videos more than every cell computed
    chosen, warnings = choose(CURVE, "accuracy", 1.0, 0.5, 10.0, videos=200, multi_label=False)
    # 0.4 scores 90 but sits between 80 and 70: a lucky spike, not taken; 0.2 is within 0.5 points, but its
    # neighbour 0.3 is not; 0.1 is the cheapest whose neighbours also hold
    assert chosen.threshold == 0.1 and warnings == []
    chosen, _ = choose(CURVE, "accuracy", 20.0, 0.5, 10.0, videos=200, multi_label=False)
    assert chosen.threshold == 0.4  # with a wide margin (floor 70) the spike's neighbourhood qualifies too


def test_the_margin_is_counted_in_whole_videos_and_a_small_split_is_flagged():
    # the nearest whole number of videos: one video of 80 is 1.25 points, nearer to 1 point than no video is
    assert allowed_drop(1.0, 80, multi_label=False) == pytest.approx(1.25)
    assert allowed_drop(1.0, 90, multi_label=False) == pytest.approx(100 / 90)
    assert allowed_drop(1.0, 40, multi_label=False) == 0.0  # one video is 2.5 points: none allowed
    assert allowed_drop(1.0, 250, multi_label=False) == pytest.approx(1.2)  # 2.5 videos round up to 3
    assert allowed_drop(1.0, 80, multi_label=True) == 1.0  # mAP is not counted in videos
    chosen, warnings = choose(CURVE, "accuracy", 1.0, 0.5, 10.0, videos=40, multi_label=False)
    assert chosen.threshold == 0.0  # 0.1's neighbour 0.2 loses half a point: a video, more than 40 allow
    assert "40 validation videos" in warnings[0] and "no loss at all" in warnings[0] and "100 videos" in warnings[0]
    chosen, warnings = choose(CURVE, "accuracy", 1.0, 0.5, 10.0, videos=80, multi_label=False)
    assert chosen.threshold == 0.1  # one video of 80 allowed: 0.1 and its neighbours stay within it
    assert "1 video (1.25 points)" in warnings[0]


def test_the_margin_counts_from_the_best_plateau_when_the_policy_beats_every_cell_computed():
    # the policy's model at 0.1-0.3 beats itself computing everything (as on the demo): the margin counts from 95
    curve = _curve([(0.0, 80.0, 10.0), (0.1, 95.0, 8.0), (0.2, 95.0, 6.0), (0.3, 95.0, 5.0), (0.4, 85.0, 4.0)])
    chosen, _ = choose(curve, "accuracy", 1.0, 0.5, 10.0, videos=1000, multi_label=False)
    assert chosen.threshold == 0.2  # not 0.4, which is only as good as every cell computed


def test_nothing_within_the_margin_keeps_every_cell_and_says_so():
    curve = _curve([(0.0, 90.0, 10.0), (0.5, 80.0, 5.0)])
    chosen, warnings = choose(curve, "accuracy", 1.0, 0.5, 10.0, videos=1000, multi_label=False)
    assert chosen.threshold == 0.0 and any("no saving" in w for w in warnings)


def test_budget_target_takes_the_best_score_within_the_budget():
    chosen, warnings = choose(CURVE, "budget", 1.0, 0.55, 10.0, videos=200, multi_label=False)
    assert chosen.threshold == 0.3 and warnings == []  # 0.2 (6 GFLOPs) is over; 0.3's neighbourhood is the best
    chosen, warnings = choose(CURVE, "budget", 1.0, 0.1, 10.0, videos=200, multi_label=False)
    assert chosen.threshold == 0.6 and "cheapest" in warnings[0]


@pytest.fixture(scope="module")
def calibrated(tiny_store, tmp_path_factory):
    """An AdaMML (RGB + audio) trained on the tiny store: its training ends by recording an operating point."""
    out = tmp_path_factory.mktemp("calibrated") / "ada"
    assert main(train_cli(tiny_store, out, "adamml", "--modalities", "rgb,audio")) == 0
    return out / "best.pt"


def test_training_records_the_operating_point_that_eval_and_predict_use(calibrated, tiny_store, tmp_path):
    payload = torch.load(calibrated, weights_only=True)
    point = OperatingPoint.from_json(payload["operating_point"])
    assert point.split == "val" and point.videos == 4 and point.target == "accuracy"
    assert point.threshold in [p.threshold for p in point.curve] and point.curve[0].threshold == 0.0
    assert point.curve[0].selection_rate == {"rgb": 1.0, "audio": 1.0}
    assert point.score >= point.reference_score - 1e-9  # 4 videos: one video is 25 points, none allowed
    summary = json.loads((calibrated.parent / "summary.json").read_text())
    assert summary["operating_point"]["threshold"] == point.threshold

    # the curve is what the sparse evaluation measures at each threshold
    thresholds = [p.threshold for p in point.curve]
    report = evaluate(calibrated, tiny_store, "val", None, thresholds)
    for measured, p in zip(report.sweep, point.curve):
        assert measured.threshold == p.threshold
        assert measured.top1 == pytest.approx(p.score)
        assert measured.gflops_per_video == pytest.approx(p.gflops_per_video)
        assert measured.selection_rate == pytest.approx(p.selection_rate)

    out = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(calibrated), "--data", str(tiny_store), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["threshold"] == point.threshold and report["threshold_source"] == "validation"
    assert report["operating_point"]["curve"][0]["threshold"] == 0.0
    assert "## Operating point" in (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert 'id="operating-point"' in page and f"threshold {point.threshold}" in page
    given = tmp_path / "given"
    assert main(["eval", "--checkpoint", str(calibrated), "--data", str(tiny_store), "--out", str(given),
                 "--threshold", "0.97"]) == 0
    report = json.loads((given / "report.json").read_text())
    assert report["threshold"] == 0.97 and report["threshold_source"] == "given"

    trained = load_trained(calibrated)
    model, cfg = trained.model, trained.config
    assert model.policy.threshold == cfg.model.policy.threshold == point.threshold
    assert load_predictor(calibrated).model.policy.threshold == point.threshold


def test_calibrate_command_for_a_budget_into_another_file(calibrated, tiny_store, tmp_path, capsys):
    other = tmp_path / "budget.pt"
    assert main(["calibrate", "--checkpoint", str(calibrated), "--data", str(tiny_store), "--target", "budget",
                 "--budget", "0.6", "--out", str(other)]) == 0
    printed = capsys.readouterr()
    assert "**chosen**" in printed.out + printed.err
    point = OperatingPoint.from_json(torch.load(other, weights_only=True)["operating_point"])
    assert point.target == "budget" and point.budget == 0.6 and point.margin is None
    if not point.warnings:
        assert point.gflops_per_video <= 0.6 * point.gflops_always_on
    # the original keeps its own
    assert torch.load(calibrated, weights_only=True)["operating_point"]["target"] == "accuracy"


def test_calibrate_refuses_a_model_without_a_policy(tiny_store, tmp_path, capsys):
    out = tmp_path / "rgb"
    assert main(train_cli(tiny_store, out, "unimodal", "--modalities", "rgb")) == 0
    assert main(["calibrate", "--checkpoint", str(out / "best.pt"), "--data", str(tiny_store)]) == 2
    assert "no policy" in capsys.readouterr().err


def test_calibrate_hands_over_the_dense_outputs_its_curve_was_read_from(calibrated, tiny_store, tmp_path):
    seen = {}
    point = calibrate(calibrated, tiny_store, "val", out=tmp_path / "again.pt",
                      on_dense=lambda model, dense, costs: seen.update(model=model, dense=dense, costs=costs))
    dense = seen["dense"]
    assert len(dense.labels) == point.videos
    # what a threshold rule studied on these outputs sees is the recorded curve, point for point
    logits, decisions = at_threshold(seen["model"], dense, point.threshold)
    assert 100.0 * float((logits.argmax(axis=1) == dense.labels).mean()) == pytest.approx(point.score)
    assert float(video_gmacs(decisions, seen["costs"]).mean()) == pytest.approx(point.gflops_per_video)
