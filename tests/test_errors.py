"""Bad input ends as one clear line, ``adamml: error: ...`` naming the file, line or key, with exit code 2 and no
traceback (unless ``adamml --debug``); non-finite numbers are refused wherever they enter; the parser loads no
heavy library."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from adamml.cli import main
from adamml.config import ConfigError, load_config
from adamml.errors import shorten
from adamml.inference.checkpoint import model_payload, save_checkpoint
from adamml.inference.evaluation import check_finite_logits
from adamml.models.build import build_model
from adamml.runtime.jsonfile import json_text

SMALL = ["model.num_classes=2", "model.num_segments=2", "model.input_size=32", "model.audio.size=32",
         "model.policy.size=16", "model.policy.audio_size=32"]


def _fails(capsys, argv: list[str], *expected: str) -> str:
    """Run the command line; it must exit 2 with one `adamml: error:` message containing `expected`."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "adamml: error:" in err and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


def _refused_by_parser(capsys, argv: list[str], *expected: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err
    return err


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A good tiny checkpoint and broken ones: NaN weights, a 'model' that is no state dict, a malicious pickle."""
    root = tmp_path_factory.mktemp("bad_checkpoints")
    cfg = load_config("tiny", SMALL)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    save_checkpoint(root / "good.pt", {**model_payload(model, cfg), "stage": "adamml"})
    with torch.no_grad():
        name, param = next((n, p) for n, p in model.named_parameters() if n.startswith("recognizers.audio"))
        param.view(-1)[3] = float("nan")
    save_checkpoint(root / "nan.pt", {**model_payload(model, cfg), "stage": "adamml"})
    save_checkpoint(root / "list.pt", {"model": [1, 2, 3], "config": {}})

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {root / 'pwned'}",)

    (root / "evil.pt").write_bytes(pickle.dumps({"model": Payload(), "config": {}}))
    return {"root": root, "good": root / "good.pt", "nan": root / "nan.pt", "list": root / "list.pt",
            "evil": root / "evil.pt", "nan_tensor": name}


# ------------------------------------------------------------------------------------------------ config


def test_broken_yaml_files_name_the_file_and_line(tmp_path, capsys):
    syntax = tmp_path / "syntax.yaml"
    syntax.write_text("model:\n  num_classes: [1,\n")
    _fails(capsys, ["flops", "--config", str(syntax)], "syntax.yaml, line 3")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("model:\n  num_classes: 3  # caf\xe9\n".encode("latin-1"))
    _fails(capsys, ["flops", "--config", str(latin)], "latin.yaml: not UTF-8")
    tag = tmp_path / "tag.yaml"
    tag.write_text(f"model: !!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    _fails(capsys, ["flops", "--config", str(tag)], "tag.yaml, line 1", "python/object/apply")
    assert not (tmp_path / "pwned").exists()
    _fails(capsys, ["flops", "--config", "tiny", "--set", "model.num_classes=[1,"], "model.num_classes=[1,")


def test_yaml_aliases_are_refused_and_values_in_messages_are_short(tmp_path, capsys):
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("anchors:\n" + "".join(f"  {line}\n" for line in lines) + "model:\n  modalities: *i\n")
    err = _fails(capsys, ["flops", "--config", str(bomb)], "bomb.yaml, line 3", "aliases")
    assert len(err) < 400
    nested: list = ["lol"] * 9
    for _ in range(8):
        nested = [nested] * 9  # 9^9 leaves by reference, as an alias bomb loads
    assert len(shorten(nested)) <= 80
    with pytest.raises(ConfigError) as error:  # a huge value under a known key is quoted short
        from adamml.config import config_from_dict
        config_from_dict({"model": {"modalities": nested}}, "bomb")
    assert len(str(error.value)) < 300


@pytest.mark.parametrize("override, key", [
    ("train.unimodal.lr=.nan", "train.unimodal.lr"), ("train.alternating.lr=.inf", "train.alternating.lr"),
    ("train.gamma=-1", "train.gamma"), ("train.efficiency_weights.rgb=-0.5", "train.efficiency_weights.rgb"),
    ("train.policy_lr=-.inf", "train.policy_lr"), ("model.policy.threshold=.nan", "model.policy.threshold"),
    ("train.temperature_decay=0", "train.temperature_decay"),
    ("train.gumbel_noise_decay=1.5", "train.gumbel_noise_decay"),
    ("train.gumbel_noise_min=-0.1", "train.gumbel_noise_min"),
])
def test_non_finite_and_out_of_range_config_values_name_the_key(capsys, override, key):
    _fails(capsys, ["flops", "--config", "tiny", "--set", override], key)


# ------------------------------------------------------------------------------------------------ arguments


@pytest.mark.parametrize("value", ["abc", "2.0", "nan", "-0.1", "inf"])
def test_threshold_must_be_a_finite_probability(capsys, value):
    _refused_by_parser(capsys, ["predict", "v.mp4", "--checkpoint", "c.pt", "--threshold", value], "--threshold")
    _refused_by_parser(capsys, ["eval", "--checkpoint", "c.pt", "--data", "s", "--threshold", f"0.5,{value}"],
                       "--threshold")


def test_top_k_and_json_are_checked_before_any_work(tmp_path, capsys):
    _refused_by_parser(capsys, ["predict", "v.mp4", "--checkpoint", "c.pt", "--top-k", "0", "--viz", "f.png"],
                       "--top-k")
    _refused_by_parser(capsys, ["predict", "v.mp4", "--checkpoint", "c.pt", "--json", str(tmp_path)], "is a folder")
    # a missing folder is created at once: the results of the work can be written at its end
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    _fails(capsys, ["predict", str(video), "--checkpoint", str(tmp_path / "no.pt"), "--json",
                    str(tmp_path / "new" / "deeper" / "p.json")], "no.pt: checkpoint not found")
    assert (tmp_path / "new" / "deeper").is_dir()
    # a video that is not there is an argument error, named before the model is loaded
    _fails(capsys, ["predict", str(tmp_path / "nope.mp4"), "--checkpoint", str(tmp_path / "no.pt")],
           "nope.mp4: no such video file")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(checkpoints, tmp_path, capsys):
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    _fails(capsys, ["predict", str(video), "--checkpoint", str(checkpoints["good"]), "--device", "cuda"],
           "--device cuda: no CUDA GPU")
    _fails(capsys, ["eval", "--checkpoint", str(checkpoints["good"]), "--data", str(tmp_path), "--device", "cuda"],
           "--device cuda: no CUDA GPU")


# ------------------------------------------------------------------------------------------------ checkpoints


def test_broken_and_malicious_checkpoints_are_refused_with_a_message(checkpoints, tmp_path, capsys):
    root = checkpoints["root"]
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")
    err = _fails(capsys, ["predict", str(video), "--checkpoint", str(checkpoints["nan"])], "nan.pt",
                 checkpoints["nan_tensor"], "NaN")
    _fails(capsys, ["eval", "--checkpoint", str(checkpoints["nan"]), "--data", str(tmp_path)], "nan.pt")
    _fails(capsys, ["predict", str(video), "--checkpoint", str(checkpoints["list"])], "list.pt", "not a state dict")
    _fails(capsys, ["bench", "--checkpoint", f"fusion={checkpoints['evil']}", "--data", str(tmp_path)], "evil.pt")
    _fails(capsys, ["bench", "--synthetic", "tiny", "--set", f"model.resnet.pretrained={checkpoints['evil']}"],
           "evil.pt", "not a readable weights-only torch checkpoint")
    assert not (root / "pwned").exists()
    assert err.count("\n") <= 2  # one message, not a page of torch's advice


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError):
        main(["--debug", "flops", "--config", str(tmp_path / "missing.yaml")])


# ------------------------------------------------------------------------------------------------ numbers out


def test_non_finite_logits_are_an_error_not_an_accuracy(tmp_path):
    logits = np.array([[0.1, 0.2], [float("nan"), 0.0]], np.float32)
    with pytest.raises(Exception, match="non-finite .* for video 'b'"):
        check_finite_logits(logits, ["a", "b"], tmp_path / "best.pt")
    check_finite_logits(logits[:1], ["a"], tmp_path / "best.pt")


def test_json_we_write_is_valid_json():
    text = json_text({"a": float("nan"), "b": [1.0, float("inf")], "c": (2, -math.inf)})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": [2, None]}
    assert "NaN" not in text and "Infinity" not in text


# ------------------------------------------------------------------------------------------------ fast start


def test_parsing_the_command_line_imports_no_heavy_library():
    code = ("import sys; from adamml.cli.main import build_parser; build_parser()\n"
            "print(sorted(m for m in ('torch', 'cv2', 'matplotlib', 'torchvision', 'lightning') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    version = subprocess.run([sys.executable, "-m", "adamml.cli", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("adamml ")


def test_no_output_may_be_an_input_and_nothing_is_written(tmp_path, capsys):
    """`predict V.mp4 --json V.mp4` would overwrite the video with the JSON: refused before any work."""
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video, but the user's file")
    before = video.read_bytes()
    assert main(["predict", str(video), "--checkpoint", str(tmp_path / "none.pt"), "--json", str(video)]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "is also an input" in err and "Traceback" not in err
    assert video.read_bytes() == before
    # the same file by another name
    (tmp_path / "link.mp4").symlink_to(video)
    assert main(["predict", str(video), "--checkpoint", "x.pt", "--viz", str(tmp_path / "link.mp4")]) == 2
    assert video.read_bytes() == before


def test_an_output_folder_that_is_a_file_is_refused_before_any_work(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    for command in (["train", "--config", "tiny", "--stage", "unimodal", "--data", str(tmp_path)],
                    ["synth"], ["export", "--checkpoint", "x.pt"], ["demo"]):
        assert main([*command, "--out", str(taken)]) == 2
        assert f"{taken}: exists and is not a folder" in capsys.readouterr().err
    assert taken.read_text() == "a file"


def test_a_file_that_cannot_be_read_or_written_is_one_line_naming_it(monkeypatch, capsys):
    import adamml.cli.flops as flops

    def disk_full(args):
        raise OSError(28, "No space left on device", "/data/out.json")

    monkeypatch.setattr(flops, "run", disk_full)
    assert main(["flops"]) == 2
    assert capsys.readouterr().err.strip() == "adamml: error: /data/out.json: No space left on device"


def test_a_list_read_strictly_refuses_a_repeat_naming_file_and_line(tmp_path, tiny_store):
    """A class or video given twice used to shift the class ids or count a video twice, without a word."""
    import shutil

    from adamml.data.dataset import Store
    from adamml.data.layout import StoreError, read_classes
    from adamml.inference.speed import parse_named
    from adamml.prepare.importers import AnnotationError, assign_classes

    classes = tmp_path / "classes.txt"
    classes.write_text("cat\ndog\ncat\n")
    with pytest.raises(AnnotationError, match=r"classes.txt:3: class 'cat' is listed again \(first at line 1\)"):
        assign_classes([], None, classes)
    with pytest.raises(StoreError, match=r"classes.txt:3: class 'cat' is listed again"):
        read_classes(classes)
    store = tmp_path / "store"
    shutil.copytree(tiny_store, store)
    manifest = store / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join([*lines, lines[0]]) + "\n")
    with pytest.raises(StoreError, match=rf"manifest.jsonl:{len(lines) + 1}: video .* again \(first at line 1\)"):
        Store.open(store)
    with pytest.raises(ValueError, match="--checkpoint a= is given twice"):
        parse_named(["a=x.pt", "a=y.pt"])


def test_an_empty_config_or_a_key_given_twice_is_an_error(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("\n# nothing\n")
    with pytest.raises(ConfigError, match="empty.yaml: the file is empty"):
        load_config(empty)
    twice = tmp_path / "twice.yaml"
    twice.write_text("base: tiny\ntrain:\n  batch_size: 4\n  seed: 1\n  batch_size: 8\n")
    message = r"twice.yaml, line 5, column 3: key 'batch_size' given twice \(first at line 3\)"
    with pytest.raises(ConfigError, match=message):
        load_config(twice)
