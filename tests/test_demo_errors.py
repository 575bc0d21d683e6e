"""benchmarks/demo_errors.py: each wrong test video is put in the right kind against the generator's truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_benchmark


@pytest.fixture(scope="module")
def demo_errors():
    return load_benchmark("demo_errors")


def cells(*informative: str) -> list[dict]:
    """Two segments: the first shows the modalities named, the second none."""
    return [{m: m in informative for m in ("rgb", "flow", "audio")}, {"rgb": False, "flow": False, "audio": False}]


def write_data(folder: Path) -> None:
    classes = [{"label": f"c{i}", "rgb": {"value": i & 1}, "flow": {"value": (i >> 1) & 1}, "audio": {"value": 0}}
               for i in range(4)]
    (folder / "synth.json").write_text(json.dumps({"classes": classes}))
    rows = [{"id": "a", "label": "c1", "segments": cells("rgb")},          # hue 1, RGB shown in segment 0
            {"id": "b", "label": "c0", "segments": cells("rgb", "flow")},  # hue 0
            {"id": "c", "label": "c3", "segments": cells("rgb", "flow")},  # hue 1, both bits
            {"id": "d", "label": "c2", "segments": cells("flow")}]         # hue 0
    (folder / "ground_truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_errors_are_told_apart_by_whether_the_deciding_modality_was_computed(demo_errors, tmp_path, capsys):
    write_data(tmp_path)
    decisions = [
        # RGB computed on its informative cell, still the wrong hue: outvoted
        {"id": "a", "prediction": "c0", "correct": False, "segments": [["rgb", "audio"], ["audio"]],
         "p_use": [[0.9, 0.1, 1.0], [0.1, 0.1, 1.0]]},
        # right
        {"id": "b", "prediction": "c0", "correct": True, "segments": [["audio"], ["audio"]],
         "p_use": [[0.45, 0.2, 1.0], [0.1, 0.1, 1.0]]},
        # wrong in both bits, RGB computed on the uninformative cell only, flow on the informative one: mixed
        {"id": "c", "prediction": "c0", "correct": False, "segments": [["flow", "audio"], ["rgb", "audio"]],
         "p_use": [[0.3, 0.9, 1.0], [0.55, 0.1, 1.0]]},
        # wrong flow bit, flow never computed: not computed
        {"id": "d", "prediction": "c0", "correct": False, "segments": [["audio"], ["audio"]],
         "p_use": [[0.1, 0.2, 1.0], [0.1, 0.1, 1.0]]},
    ]
    run = tmp_path / "adamml" / "eval-test"
    run.mkdir(parents=True)
    (run / "decisions.json").write_text(json.dumps(decisions))

    demo_errors.main([str(tmp_path / "adamml"), "--data", str(tmp_path), "--json", str(tmp_path / "out.json")])

    result = json.loads((tmp_path / "out.json").read_text())[str(tmp_path / "adamml")]
    assert result["errors"] == 3
    assert result["kinds"] == {"outvoted": 1, "not computed": 1, "mixed": 1}
    assert {w["id"]: w["kind"] for w in result["wrong"]} == {"a": "outvoted", "c": "mixed", "d": "not computed"}
    assert result["by_deciding_modality"]["rgb"] == {"computed": 1, "not computed": 1}
    assert result["by_deciding_modality"]["flow"] == {"computed": 1, "not computed": 1}
    assert result["rgb_by_hue"] == {"hue 0": {"videos": 2, "rgb_computed": 0, "errors": 1},
                                    "hue 1": {"videos": 2, "rgb_computed": 1, "errors": 2}}
    assert result["rgb_p_use_near_threshold"] == pytest.approx(2 / 8)
    assert "3 of 4 wrong" in capsys.readouterr().out


def test_a_run_without_test_decisions_is_named(demo_errors, tmp_path):
    write_data(tmp_path)
    with pytest.raises(SystemExit, match="no eval-test/decisions.json"):
        demo_errors.main([str(tmp_path / "missing"), "--data", str(tmp_path)])
