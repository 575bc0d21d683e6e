"""A scaled-down `adamml demo`: every stage runs and writes its report and figures; a rerun reuses the work."""

from __future__ import annotations

import json

import pytest

from adamml.cli import main
from adamml.runtime.jsonfile import finite_or_none
from adamml.workflows.demo_pipeline import policy_vs_truth

SMALL = [
    "--classes", "2", "--train-per-class", "4", "--val-per-class", "2", "--test-per-class", "2", "--size", "32",
    "--short-side", "32", "--workers", "1",
]
for item in ("model.input_size=32", "model.audio.size=32", "model.policy.size=16", "model.policy.audio_size=32",
             "data.train_scale=[32,40]", "data.test_short_side=32", "train.batch_size=4", "train.eval_batch_size=4",
             "train.unimodal.epochs=1", "train.fusion.epochs=1", "train.policy_pretrain.epochs=1",
             "train.warmup.epochs=1", "train.alternating.epochs=1", "train.finetune.epochs=1"):
    SMALL += ["--set", item]


@pytest.mark.slow
def test_scaled_down_demo_runs_every_stage_and_reuses_its_work(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *SMALL]) == 0
    for name in ("report.md", "report.json", "selections.png", "pareto.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    for run in ("unimodal-rgb", "unimodal-flow", "unimodal-audio", "fusion", "adamml", "random"):
        assert (out / run / "best.pt").exists() and (out / run / "eval-test" / "report.json").exists(), run
    report = json.loads((out / "report.json").read_text())
    # each method under the name of its run folder (`adamml compare`'s layout)
    assert list(report["reports"]) == ["unimodal-rgb", "unimodal-flow", "unimodal-audio", "fusion", "random", "adamml"]
    # what the demo exists to show, scored from the decisions the evaluation wrote and the generator's ground
    # truth: the report holds exactly that (a run this small learns too little for a level to be asserted here;
    # tests/test_train.py::test_policy_learns_to_pick_the_informative_modality asserts the learning on a toy)
    truth = {row["id"]: row for row in map(json.loads, (out / "data" / "ground_truth.jsonl").read_text().splitlines())}
    for policy in ("adamml", "random"):
        decisions = json.loads((out / policy / "eval-test" / "decisions.json").read_text())
        assert len(decisions) == 4 and all(v["id"] in truth for v in decisions)
        scored = finite_or_none(policy_vs_truth(decisions, truth))  # as report.json writes it: NaN as null
        assert report["policy_vs_truth"][policy] == scored, policy
    informative = report["policy_vs_truth"]["adamml"]["visual_precision"]
    assert len(report["targets"]) == 4
    assert report["targets"][3]["met"] == (informative is not None and informative >= 0.8)
    assert report["reports"]["fusion"]["selection_rate"] == {"rgb": 1.0, "flow": 1.0, "audio": 1.0}
    assert "| Weighted fusion |" in (out / "report.md").read_text()
    # the machine the figures depend on: its kernels' instruction set and thread count
    import torch

    assert report["machine"]["kernels"] == torch.backends.cpu.get_cpu_capability()
    assert report["machine"]["threads"] == torch.get_num_threads() and "## Machine" in (out / "report.md").read_text()
    first = report["seconds"]
    capsys.readouterr()
    assert main(["demo", "--out", str(out), *SMALL]) == 0  # everything reused
    err = capsys.readouterr().err
    assert "trained earlier, reused" in err and "0 written" in err
    # the report keeps the wall time of the run that did the work, marked as reused
    again = json.loads((out / "report.json").read_text())["seconds"]
    assert again["train adamml (earlier run, reused)"] == pytest.approx(first["train adamml"])
    assert again["synth (earlier run, reused)"] == pytest.approx(first["synth"])
    # a folder written by other generator arguments is refused with the way out
    assert main(["demo", "--out", str(out), "--classes", "2", "--size", "48", "--workers", "1"]) == 2
    assert "--fresh" in capsys.readouterr().err


def test_policy_against_the_ground_truth():
    truth = {"v": {"segments": [{"rgb": True, "flow": False, "audio": True},
                                {"rgb": False, "flow": True, "audio": False}]}}
    decisions = [{"id": "v", "segments": [["rgb", "flow"], ["rgb", "audio"]]}]
    result = policy_vs_truth(decisions, truth)
    assert result["precision"] == pytest.approx(1 / 4)  # rgb in segment 1 only
    assert result["visual_precision"] == pytest.approx(1 / 3)  # of rgb, flow, rgb: the first only
    assert result["recall"] == pytest.approx(1 / 3)
    assert result["per_modality"]["rgb"] == {"precision": 0.5, "recall": 1.0, "covered": 1.0}
    assert result["per_modality"]["flow"]["covered"] == 0.0


@pytest.mark.parametrize("arguments, message", [
    (["--config", "nope"], "no preset named 'nope'"),
    (["--set", "train.batch_size=0"], "batch_size"),
    (["--train-per-class", "0"], "--train-per-class must be at least 1"),
    (["--classes", "0"], "need at least 2 classes"),
    (["--size", "63"], "size must be even"),
    (["--informative-rate", "5"], "informative rate must be in [0, 1]"),
])
def test_bad_demo_settings_stop_before_any_video_is_made(tmp_path, capsys, arguments, message):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *arguments]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()  # nothing generated, nothing to clean up
