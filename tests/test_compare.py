"""`adamml compare`: method parsing, ordering, and one small comparison end to end."""

from __future__ import annotations

import json

import pytest

from adamml.cli import main
from adamml.inference.checkpoint import load_checkpoint
from adamml.inference.results import EvalReport
from adamml.workflows.comparison import Method, parse_method, plan, savings
from adamml.workflows.steps import SWEEP
from tests.conftest import TINY


def test_methods_are_parsed_and_ordered():
    default = ("rgb", "flow", "audio")
    assert parse_method("rgbdiff", default) == Method("unimodal", ("rgbdiff",))
    assert parse_method("fusion", default) == Method("fusion", default)
    assert parse_method("adamml:rgb+flow", default) == Method("adamml", ("rgb", "flow"))
    for bad, words in (("fuson", "unknown method"), ("fusion:rgb", "at least two"), ("unimodal:rgb+flow", "one"),
                       ("fusion:rgb+sound", "unknown modality")):
        with pytest.raises(ValueError, match=words):
            parse_method(bad, default)
    order = plan([Method("random", ("rgb", "flow")), Method("fusion", ("rgb", "flow")),
                  Method("adamml", ("rgb", "flow")), Method("unimodal", ("rgb",))])
    assert [m.key(default) for m in order] == ["unimodal-rgb", "unimodal-flow", "fusion-rgb+flow",
                                               "adamml-rgb+flow", "random-rgb+flow"]
    # the run folders: a method on the job's own modalities by its stage alone (the demo's fusion, adamml, random)
    assert [m.key(("rgb", "flow")) for m in order] == ["unimodal-rgb", "unimodal-flow", "fusion", "adamml", "random"]


def test_compare_trains_evaluates_and_reuses(tiny_store, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cmp"
    args = ["compare", "--config", "tiny", "--data", str(tiny_store), "--out", str(out),
            "--methods", "rgb", "fusion:rgb+flow", "adamml:rgb+flow", "random:rgb+flow",
            "--set", "train.efficiency_weights.flow=0.8"]
    for item in TINY[1:]:  # the store sets the number of classes
        args += ["--set", item]
    assert main(args) == 0
    result = json.loads((out / "compare.json").read_text())
    keys = ["unimodal-rgb", "unimodal-flow", "fusion-rgb+flow", "adamml-rgb+flow", "random-rgb+flow"]
    assert list(result["methods"]) == keys
    for key in keys:
        report = result["methods"][key]
        assert 0.0 <= report["top1"] <= 100.0
        assert report["gflops_per_video"] > 0 or report["stage"] in ("adamml", "random")
        assert result["seconds"][key]["train"] > 0
    fusion, uni = result["methods"]["fusion-rgb+flow"], result["methods"]["unimodal-rgb"]
    assert fusion["gflops_per_video"] > uni["gflops_per_video"]
    ada = result["methods"]["adamml-rgb+flow"]
    swept = [point["threshold"] for point in ada["sweep"]]
    # reported at the operating point chosen on validation, the standard sweep beside it
    assert ada["threshold_source"] == "validation" and swept[0] == ada["threshold"] and set(SWEEP) <= set(swept)
    # the random policy runs at the selection rates AdaMML reached on the validation split
    val = json.loads((out / "adamml-rgb+flow" / "eval-val" / "report.json").read_text())
    rates = load_checkpoint(out / "random-rgb+flow" / "best.pt")["random_rates"]
    assert rates == pytest.approx([val["selection_rate"]["rgb"], val["selection_rate"]["flow"]], abs=1e-4)
    assert "fusion-rgb+flow" in {r["versus"] for r in result["adamml_vs"]}
    text = (out / "compare.md").read_text()
    assert "| Weighted fusion | rgb+flow |" in text and "| AdaMML | rgb+flow |" in text
    assert (out / "compare.png").stat().st_size > 5000
    assert 'id="scatter"' in (out / "report.html").read_text()  # the page: every method, AdaMML's videos
    # a second run reuses every training
    stamp = (out / "fusion-rgb+flow" / "summary.json").stat().st_mtime
    assert main(args) == 0
    assert (out / "fusion-rgb+flow" / "summary.json").stat().st_mtime == stamp
    again = json.loads((out / "compare.json").read_text())["seconds"]  # the times of the run that trained
    assert again["fusion-rgb+flow"]["train"] == pytest.approx(result["seconds"]["fusion-rgb+flow"]["train"])
    # a changed configuration (a new preset, another --set) is not given the earlier runs' figures
    assert main([*args, "--set", "model.policy.head_input=lstm"]) == 2
    err = capsys.readouterr().err
    assert "unimodal-rgb holds a run of the unimodal stage trained with another configuration" in err
    assert "model.policy.head_input: 'lstm+features' -> 'lstm'" in err
    assert (out / "fusion-rgb+flow" / "summary.json").stat().st_mtime == stamp


def test_adamml_is_compared_with_methods_on_the_same_modalities():
    def report(stage, modalities, top1, gflops):
        return EvalReport(checkpoint="best.pt", data=None, stage=stage, fusion="weighted", modalities=modalities, split="test",
                          videos=10, segments=4, threshold=0.5 if stage == "adamml" else None, top1=top1, top5=top1,
                          mAP=top1, gflops_per_video=gflops, gflops={}, gflops_all_layers_per_video=gflops,
                          gflops_always_on=gflops, saving_vs_always_on=0.0, selection_rate={}, videos_per_second=1.0,
                          wall_seconds=1.0, device="cpu", precision="fp32", sweep=[])

    reports = {"adamml-rgb+flow": report("adamml", ["rgb", "flow"], 80.0, 1.0),
               "fusion-rgb+flow": report("fusion", ["rgb", "flow"], 82.0, 2.0),
               "fusion-rgb+rgbdiff": report("fusion", ["rgb", "rgbdiff"], 81.0, 4.0),
               "fusion-rgb+flow+audio": report("fusion", ["rgb", "flow", "audio"], 90.0, 2.5),
               "unimodal-rgb": report("unimodal", ["rgb"], 70.0, 0.5)}
    rows = {r["versus"]: r for r in savings(reports)}
    assert set(rows) == {"fusion-rgb+flow", "fusion-rgb+rgbdiff"}
    assert rows["fusion-rgb+flow"]["top1_difference"] == pytest.approx(-2.0)
    assert rows["fusion-rgb+rgbdiff"]["gflops_saving"] == pytest.approx(0.75)


def test_a_split_the_store_lacks_is_refused_before_any_training(tiny_store, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "cmp"
    assert main(["compare", "--config", "tiny", "--data", str(tiny_store), "--out", str(out),
                 "--methods", "rgb", "--split", "nosuch"]) == 2
    assert "no prepared videos in split 'nosuch' (it has test, train, val)" in capsys.readouterr().err
    assert not (out / "unimodal-rgb").exists()
