"""The public Python API, used the way a notebook would: only names from ``import adamml``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import adamml
from tests.conftest import make_clip, TINY


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A folder of videos DIR/<split>/<label>/<video>.mp4: two classes told apart by motion and pitch."""
    root = tmp_path_factory.mktemp("api_videos")
    for split, count in (("train", 4), ("val", 2), ("test", 2)):
        for c, (label, velocity) in enumerate((("right", (2.0, 0.0)), ("down", (0.0, 2.0)))):
            for i in range(count):
                make_clip(root / split / label / f"{i}.mp4", frames=24, size=(48, 32), velocity=velocity,
                          seed=10 * c + i, pitch=(440.0 if c == 0 else 1200.0) * (1 + 0.05 * i))
    return root


def test_prepare_train_evaluate_and_predict_through_the_api(videos, tmp_path):
    summary = adamml.prepare_store(videos, tmp_path / "store", adamml.PrepareSettings(flow="dis", short_side=32),
                                   list_format=None, quiet=True)
    assert summary.ok == 16 and summary.failed == 0
    cfg = adamml.load_config("tiny", [*TINY, "model.modalities=[rgb,audio]"])
    assert isinstance(cfg, adamml.Config) and cfg.model.modalities == ("rgb", "audio")
    assert adamml.build_model(cfg.model).modalities == ("rgb", "audio")
    result = adamml.train_stage(cfg, "adamml", tmp_path / "store", tmp_path / "adamml")
    assert result.stage == "adamml" and (tmp_path / "adamml" / "best.pt").exists()

    checkpoint = tmp_path / "adamml" / "best.pt"
    trained = adamml.load_trained(checkpoint)
    assert isinstance(trained, adamml.Checkpoint) and trained.classes == ["down", "right"]
    assert not trained.model.training and trained.stage == "adamml" and trained.config.model.num_classes == 2
    report = adamml.evaluate(checkpoint, tmp_path / "store", "test")
    assert isinstance(report, adamml.EvalReport) and report.videos == 4 and report.uses_policy
    assert 0.0 <= report.top1 <= 100.0 and report.gflops_per_video <= report.gflops_always_on
    assert adamml.EvalReport.from_json(report.to_json()) == report
    point = adamml.calibrate(checkpoint, tmp_path / "store", "val", out=tmp_path / "calibrated.pt")
    assert isinstance(point, adamml.OperatingPoint) and point.split == "val" and point.videos == 4
    assert report.threshold == trained.operating_point["threshold"]  # the training's own choice, used by eval

    predictor = adamml.load_predictor(checkpoint)
    prediction, _inputs = predictor(videos / "test" / "down" / "0.mp4", top_k=2)
    assert isinstance(prediction, adamml.VideoPrediction)
    assert {name for name, _p in prediction.top} == {"down", "right"}


def test_api_names_stay_functions_once_every_module_is_imported():
    """A submodule import sets the package attribute of its name: no API name may be a module's name."""
    import adamml.inference.evaluation  # noqa: F401
    import adamml.inference.prediction  # noqa: F401
    import adamml.prepare.runner  # noqa: F401
    import adamml.train.trainer  # noqa: F401

    for name in adamml.__all__:
        if name != "__version__":
            assert not isinstance(getattr(adamml, name), type(adamml)), name
    assert callable(adamml.evaluate) and callable(adamml.train_stage)


def test_an_unknown_name_is_an_attribute_error_and_import_is_light():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        adamml.nope  # noqa: B018
    assert set(adamml.__all__) <= set(dir(adamml)) | {"__version__"}
    code = "import sys, adamml; print(sorted(m for m in ('torch', 'cv2', 'av') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
