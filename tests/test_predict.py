"""`adamml predict`: in-memory decoding, flow only for the selected segments, same predictions as `adamml eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adamml.cli import main
from adamml.config import load_config
from adamml.data.layout import read_jsonl
from adamml.inference.checkpoint import model_payload, save_checkpoint
from adamml.inference.evaluation import evaluate
from adamml.inference.prediction import InMemoryFrames, load_predictor
from adamml.models.build import build_model
from adamml.prepare.importers import assign_classes, import_annotations
from adamml.prepare.pipeline import run_prepare
from adamml.prepare.worker import PrepareSettings
from tests.conftest import make_clip

SMALL = [
    "model.num_classes=2", "model.num_segments=3", "model.input_size=32", "model.audio.size=32",
    "model.policy.size=16", "model.policy.audio_size=32", "data.stride=2", "data.test_short_side=32",
    "data.workers=0", "train.eval_batch_size=2",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_videos")
    rows = ["path,label,split"]
    for i, (label, velocity) in enumerate((("right", (2.0, 0.0)), ("down", (0.0, 2.0)), ("right", (2.0, 0.0)))):
        rel = f"test/{label}/{i}.mp4"
        make_clip(root / rel, frames=24, size=(48, 32), velocity=velocity, seed=i, audio=i != 1)
        rows.append(f"{rel},{label},test")
    (root / "ann.csv").write_text("\n".join(rows) + "\n")
    store = tmp_path_factory.mktemp("predict_store")
    imported = import_annotations("csv", root / "ann.csv", root)
    classes, entries = assign_classes(imported.entries, None, None)
    run_prepare(entries, classes, root, store, PrepareSettings(flow="dis", short_side=32, jpeg_quality=100))
    cfg = load_config("tiny", SMALL)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    checkpoint = tmp_path_factory.mktemp("predict_ckpt") / "best.pt"
    save_checkpoint(checkpoint, {**model_payload(model, cfg, classes=classes), "stage": "adamml"})
    return root, store, checkpoint, classes


def test_same_predictions_as_eval_on_a_prepared_copy(setup, tmp_path):
    root, store, checkpoint, classes = setup
    report = evaluate(checkpoint, store, "test", tmp_path / "eval", thresholds=[0.0])  # every cell computed
    decisions = {d["id"]: d for d in json.loads((tmp_path / "eval" / "decisions.json").read_text())}
    predictor = load_predictor(checkpoint, "dis", threshold=0.0)
    assert report.videos == 3
    for row in read_jsonl(store / "manifest.jsonl"):
        result, _ = predictor(root / row["source"])
        expected = decisions[row["id"]]
        assert result.top[0][0] == expected["prediction"]
        np.testing.assert_allclose([p for _c, p in result.top], [p for _c, p in expected["top5"]], atol=0.02)
        np.testing.assert_allclose(result.p_use, expected["p_use"], atol=0.02)
        assert result.segments == expected["segments"]


def test_rgb_frames_are_converted_only_for_segments_that_chose_rgb(setup, monkeypatch):
    """Before the decisions only the policy's frames are cropped and normalised; after, the RGB recognizer's for
    the segments that chose RGB, and the logits are those of the evaluation pass given the same decisions."""
    from adamml.data.batch import network_ready
    from adamml.data.dataset import SegmentDataset, Store, sampling_config
    from adamml.inference.checkpoint import load_trained
    import adamml.inference.prediction as predict_module

    root, store, checkpoint, _classes = setup
    chosen = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]])  # (1, S, M): rgb, flow, audio
    predictor = load_predictor(checkpoint, "dis")
    predictor.override = lambda _decisions: chosen
    converted = []

    def counting(source, positions, crop, raw=False):
        converted.append(len(positions))
        return rgb_segment(source, positions, crop, raw)

    rgb_segment = predict_module.rgb_segment
    monkeypatch.setattr(predict_module, "rgb_segment", counting)
    seen = {}
    infer = predictor.model.infer

    def capturing(batch, decisions):
        seen.update(batch)
        return infer(batch, decisions)

    monkeypatch.setattr(predictor.model, "infer", capturing)
    row = read_jsonl(store / "manifest.jsonl")[0]
    result, _ = predictor(root / row["source"])
    cfg = predictor.cfg
    assert converted == [cfg.model.policy.frames] * 3 + [cfg.model.frames_per_segment]  # 3 policy views, 1 segment for RGB
    assert result.segments == [["rgb", "audio"], ["flow", "audio"], []]
    trained = load_trained(checkpoint)
    model = trained.model
    data = SegmentDataset(Store.open(store), "test", cfg.model.modalities, train=False, sampling=sampling_config(cfg))
    item = data[[r["id"] for r in data.rows].index(row["id"])]
    batch = network_ready({k: v[None] for k, v in item.items() if v.dim() >= 3}, cfg.model)
    # the recognizer's RGB: segment 0 as the dataset reads it from the prepared copy (JPEG at quality 100 with
    # halved chroma: 0.03 on average here, 0.42 against the next segment), the others never converted
    error = (seen["rgb"][0, 0] - batch["rgb"][0, 0]).abs().mean()
    assert error < 0.05 and error < (seen["rgb"][0, 0] - batch["rgb"][0, 1]).abs().mean() / 5
    assert seen["rgb"][0, 0].abs().mean() > 0.1 and not seen["rgb"][0, 1:].any()
    with torch.no_grad():
        expected = model.infer(batch, chosen).logits[0].numpy()
        others = [model.infer(batch, other).logits[0].numpy() for other in (chosen.flip(1), 1.0 - chosen)]
    # the prepared copy's JPEG error moves the logits by 1-2e-3 (it varies with the fixture's training); other
    # decisions on the same inputs move them by ~0.03
    gap = np.abs(result.logits - expected).max()
    assert gap < 5e-3 and all(gap < np.abs(result.logits - other).max() / 3 for other in others)


def test_flow_is_computed_only_for_segments_that_chose_it(setup):
    root, _store, checkpoint, _classes = setup
    video = root / "test" / "right" / "0.mp4"
    everything = load_predictor(checkpoint, "dis", threshold=0.0)
    result, _ = everything(video)
    assert result.flow_pairs == result.flow_pairs_always_on > 0
    nothing = load_predictor(checkpoint, "dis", threshold=1.0)
    result, _ = nothing(video)
    assert result.flow_pairs == 0 and all(seg == [] for seg in result.segments)
    assert result.gflops < everything(video)[0].gflops
    some = load_predictor(checkpoint, "dis", threshold=0.5)
    result, _ = some(video)
    flow_segments = sum("flow" in seg for seg in result.segments)
    assert (result.flow_pairs > 0) == (flow_segments > 0)
    assert result.flow_pairs <= result.flow_pairs_always_on


def test_frames_are_converted_only_for_the_policy_and_the_chosen_cells(setup, tmp_path):
    """Decoded pictures are resized and converted when read: with no cell chosen, only the policy's frames
    (and those of its RGB differences); with every cell chosen, every frame the segments use."""
    from adamml.data.dataset import DIFFS, policy_positions
    from adamml.data.sampling import diff_frame_indices

    import dataclasses

    _root, _store, checkpoint, _classes = setup
    predictor = load_predictor(checkpoint, "dis")
    # 8 frames 4 apart: the policy's (every other one, with the 5 next for its RGB differences) are fewer
    predictor.sampling = dataclasses.replace(predictor.sampling, frames=8, stride=4)
    video = make_clip(tmp_path / "long.mp4", frames=120, size=(48, 32))
    converted, logits = {}, {}
    for chosen in (0.0, 1.0):
        predictor.override = lambda decisions, value=chosen: torch.full_like(decisions, value)
        result, figure = predictor(video)
        converted[chosen], logits[chosen] = figure["frames"].converted, result.logits
    n = result.num_frames
    policy = policy_positions(predictor.segment_indices(n), predictor.sampling)
    needed = set()
    if "rgb" in predictor.policy_inputs:
        needed |= set(policy.ravel().tolist())
    if "rgbdiff" in predictor.policy_inputs:
        needed |= set(diff_frame_indices(policy, DIFFS, n).ravel().tolist())
    assert needed and converted[0.0] == len(needed)
    assert converted[1.0] == len(predictor.frames_used(n)) > len(needed)
    # the pictures converted late are those converted at once (prediction with everything held converted)
    import adamml.inference.prediction as predict_module

    saved = predict_module.DEFER_BYTES
    try:
        predict_module.DEFER_BYTES = 0
        eager, figure = predictor(video)
    finally:
        predict_module.DEFER_BYTES = saved
    assert figure["frames"].converted == len(predictor.frames_used(n))
    assert eager.logits == logits[1.0]


def test_video_without_audio_and_very_short_video(setup, tmp_path):
    root, _store, checkpoint, _classes = setup
    predictor = load_predictor(checkpoint, "dis", threshold=0.0)
    silent, _ = predictor(root / "test" / "down" / "1.mp4")
    assert not silent.has_audio and np.isfinite(silent.logits).all()
    short = make_clip(tmp_path / "short.mp4", frames=2, size=(48, 32))
    result, _ = predictor(short)
    assert result.num_frames == 2 and np.isfinite(result.logits).all()


def test_frames_held_do_not_grow_with_the_video_length(setup, tmp_path, monkeypatch):
    _root, _store, checkpoint, _classes = setup
    predictor = load_predictor(checkpoint, "dis", threshold=0.0)  # every cell computed: flow's frames held too
    held: list[int] = []
    keep = InMemoryFrames.__init__

    def spy(self, frames, *args, **kwargs):
        held.append(len(frames))
        keep(self, frames, *args, **kwargs)

    monkeypatch.setattr(InMemoryFrames, "__init__", spy)
    for frames in (100, 1000):
        result, figure = predictor(make_clip(tmp_path / f"{frames}.mp4", frames=frames, size=(48, 32)))
        assert result.num_frames == frames and np.isfinite(result.logits).all()
        assert set(figure["frames"]) == predictor.frames_used(frames)
    # 3 segments of 8 frames at stride 2, their RGB differences and flow stacks: the same count at 10x the length
    assert held[0] == held[1] == len(predictor.frames_used(1000)) < 100


def test_cli_writes_json_and_figure_and_reports_bad_files(setup, tmp_path, capsys):
    root, _store, checkpoint, _classes = setup
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope")
    out = tmp_path / "not-yet" / "pred.json"  # its folder is made before the work, not found missing after it
    code = main(["predict", str(root / "test" / "right" / "0.mp4"), str(bad), "--checkpoint", str(checkpoint),
                 "--json", str(out), "--viz", str(tmp_path / "fig.png")])
    assert code == 1  # one video failed, the other was predicted
    text = capsys.readouterr().out
    assert "bad.mp4" in text and "optical flow computed for" in text
    results = json.loads(out.read_text())
    assert len(results) == 2 and set(results[0]["seconds"]) == {"decode", "policy inputs", "policy", "rgb", "flow",
                                                                  "recognizers"}
    # the video that failed is listed with its error, not left out
    assert results[0]["status"] == "ok" and results[1]["status"] == "failed"
    assert results[1]["path"] == str(bad) and "bad.mp4" in results[1]["error"]
    assert (tmp_path / "fig-0.png").stat().st_size > 0


def test_bench_measures_network_and_end_to_end_speed(setup, tmp_path, capsys):
    root, store, checkpoint, classes = setup
    payload = torch.load(checkpoint, weights_only=True)
    fusion = tmp_path / "fusion.pt"
    save_checkpoint(fusion, {**payload, "stage": "fusion"})
    out = tmp_path / "bench.json"
    assert main(["bench", "--checkpoint", f"adamml={checkpoint}", "--checkpoint", f"fusion={fusion}",
                 "--data", str(store), "--videos", str(root), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    ada, base = result["rows"]["adamml"], result["rows"]["fusion"]
    assert base["network_speedup"] == 1.0 and base["gflops_ratio"] == 1.0
    for row in (ada, base):
        assert row["network_videos_per_second"] > 0 and row["end_to_end_videos_per_second"] > 0
    assert ada["network_efficiency"] == pytest.approx(ada["network_speedup"] / ada["gflops_ratio"])
    assert base["flow_pairs_per_video"] >= ada["flow_pairs_per_video"]
    assert "speed-up / ratio" in capsys.readouterr().out
    assert main(["bench", "--checkpoint", f"adamml={checkpoint}", "--data", str(store)]) == 2  # no baseline
    capsys.readouterr()
    assert main(["bench", "--checkpoint", f"fusion={fusion}", "--data", str(store), "--threshold", "0.3"]) == 2
    assert "--threshold applies to checkpoints with a policy" in capsys.readouterr().err  # not ignored


def test_synthetic_bench_runs_the_configured_rates_at_any_size(tmp_path, capsys):
    from adamml.config import load_config
    from adamml.inference.gflops import measure_costs
    from adamml.inference.speed import exact_decisions, parse_rates

    decisions = exact_decisions(3, 4, [0.25, 0.5, 1.0], seed=1)
    assert decisions.shape == (3, 4, 3) and decisions.sum(dim=(0, 1)).tolist() == [3.0, 6.0, 12.0]
    assert parse_rates("rgb=0.2,flow=0.4,audio=1", ("rgb", "flow", "audio")) == [0.2, 0.4, 1.0]
    assert parse_rates("0.3", ("rgb", "audio")) == [0.3, 0.3]
    for bad in ("rgb=0.2", "rgb=0.2,flow=0.4,audio=1,depth=1", "rgb=1.5,flow=0,audio=0", "rgb=x,flow=0,audio=0"):
        with pytest.raises(ValueError, match="--rates"):
            parse_rates(bad, ("rgb", "flow", "audio"))
    small = ["model.num_classes=3", "model.num_segments=4", "model.input_size=32", "model.audio.size=32",
             "model.policy.size=16", "model.policy.audio_size=16", "model.resnet.base_width=8"]
    out = tmp_path / "synthetic.json"
    assert main(["bench", "--synthetic", "tiny", *[f"--set={s}" for s in small], "--num-videos", "3",
                 "--batch-size", "2", "--rates", "rgb=0.25,flow=0.5,audio=1", "--repeats", "1",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["rows"]) == {"adamml", "fusion", "rgb", "flow", "audio"}
    costs = measure_costs(load_config("tiny", small).model)
    policy = costs.policy().conv
    expected = 4 * (policy + 0.25 * costs.recognizers["rgb"].conv + 0.5 * costs.recognizers["flow"].conv
                    + costs.recognizers["audio"].conv)
    assert result["rows"]["adamml"]["gflops"] == pytest.approx(expected, rel=1e-6)
    assert result["rows"]["fusion"]["network_speedup"] == 1.0
    assert all(row["network_videos_per_second"] > 0 for row in result["rows"].values())
    assert "speed-up / ratio" in capsys.readouterr().out
    assert main(["bench", "--synthetic", "tiny", "--data", str(tmp_path)]) == 2  # random models take no data
    if not torch.cuda.is_available():
        assert main(["bench", "--synthetic", "tiny", "--device", "cuda"]) == 2  # a clear error, no traceback


def test_synthetic_bench_end_to_end_on_video_files(setup, tmp_path, capsys):
    """`bench --synthetic CONFIG --videos`: predict's whole path on real files with random weights at the
    config's sizes; AdaMML at exactly the given rates, flow computed for the segments that chose it only."""
    from adamml.config import load_config
    from adamml.inference.gflops import measure_costs

    root, _store, _checkpoint, _classes = setup
    out = tmp_path / "e2e.json"
    assert main(["bench", "--synthetic", "tiny", *[f"--set={s}" for s in SMALL], "--videos", str(root / "test"),
                 "--rates", "rgb=1,flow=0.34,audio=0.67", "--no-unimodal", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["videos"] == 3 and result["flow"] == "dis" and set(result["rows"]) == {"adamml", "fusion"}
    adamml, fusion = result["rows"]["adamml"], result["rows"]["fusion"]
    costs = measure_costs(load_config("tiny", SMALL).model)
    expected = costs.policy().conv * 3 + 3 * costs.recognizers["rgb"].conv + costs.recognizers["flow"].conv \
        + 2 * costs.recognizers["audio"].conv  # 3 segments: RGB on 3, flow on 1, audio on 2
    assert adamml["gflops"] == pytest.approx(expected, rel=1e-6)
    assert 0 < adamml["flow_pairs_per_video"] < fusion["flow_pairs_per_video"]
    assert adamml["end_to_end_videos_per_second"] > 0 and fusion["end_to_end_speedup"] == 1.0
    assert set(adamml["seconds_per_video"]) >= {"decode", "policy", "flow", "recognizers"}
    assert "network videos/s" not in capsys.readouterr().out
    assert main(["bench", "--synthetic", "tiny", "--videos", str(tmp_path / "none")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_a_one_frame_video_and_a_prediction_without_any_recognizer_are_said():
    from adamml.cli.predict import prediction_warnings
    from adamml.inference.prediction import VideoPrediction

    def result(frames, segments):
        return VideoPrediction(path="v.mp4", top=[], segments=segments, p_use=[], gflops=0.0, gflops_always_on=1.0,
                               flow_pairs=0, flow_pairs_always_on=4, num_frames=frames)

    assert prediction_warnings(result(48, [["rgb"], []])) == []
    short, empty = prediction_warnings(result(1, [[], []]))
    assert "1 frame(s): no motion" in short and "computed no modality on any segment" in empty
