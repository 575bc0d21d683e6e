"""Why AdaMML got the demo's test videos wrong: each error set against the generator's ground truth.

Every class of the built-in benchmark is one combination of three bits, one per modality (a hue, a direction of
motion, a pitch), and ground_truth.jsonl says which segment shows which bit. A wrong prediction differs from the
label in one or more bits; for each of those "deciding" modalities this script asks whether the policy computed
an informative cell of it. Errors fall into three kinds:

- outvoted: an informative cell of a deciding modality was computed and fusion still chose the wrong bit (the
  logits of one cell, averaged with `segment_mean: all` over every segment, lost to the other recognizers);
- not computed: no informative cell of any deciding modality was computed (a policy decision);
- mixed: several deciding modalities, some computed and some not.

It also counts, for RGB, how many test videos of each hue got an informative RGB cell computed (the demo's policy
tends to compute RGB for one hue only and leave the other to the absence of RGB evidence), and the share of RGB
P(use) values near the threshold (0.4-0.6), which tells how much a threshold sweep will move.

    .venv/bin/python benchmarks/demo_errors.py runs/demo/adamml runs/seeds/seed1/adamml ...
    .venv/bin/python benchmarks/demo_errors.py --data runs/demo/data --json errors.json runs/demo/adamml

Each RUN is a training folder with eval-test/decisions.json (or that eval folder itself).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODALITIES = ("rgb", "flow", "audio")


def load_truth(data: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """Ground truth rows by video id, and each class's bits by label."""
    truth_path, synth_path = data / "ground_truth.jsonl", data / "synth.json"
    for path in (truth_path, synth_path):
        if not path.exists():
            sys.exit(f"{path}: not found; --data must be the folder that `adamml synth` (or `make demo`) wrote")
    with truth_path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    classes = json.loads(synth_path.read_text(encoding="utf-8"))["classes"]
    bits = {c["label"]: {m: c[m]["value"] for m in MODALITIES} for c in classes}
    return {row["id"]: row for row in rows}, bits


def decisions_path(run: Path) -> Path:
    for candidate in (run / "eval-test" / "decisions.json", run / "decisions.json"):
        if candidate.exists():
            return candidate
    sys.exit(f"{run}: no eval-test/decisions.json (evaluate it on the test split first: adamml eval ... --split test)")


def analyse(decisions: list[dict], truth: dict[str, dict], bits: dict[str, dict]) -> dict:
    kinds = {"outvoted": 0, "not computed": 0, "mixed": 0}
    by_modality = {m: {"computed": 0, "not computed": 0} for m in MODALITIES}
    hue = {}  # RGB bit value -> videos, videos with an informative RGB cell computed, errors
    near, rgb_probs = 0, 0
    videos, wrong = 0, []
    for video in decisions:
        gt = truth.get(video["id"])
        if gt is None:
            continue
        videos += 1
        label = gt["label"]
        computed = {m: any(m in used and cell[m] for used, cell in zip(video["segments"], gt["segments"]))
                    for m in MODALITIES}
        h = hue.setdefault(bits[label]["rgb"], {"videos": 0, "rgb_computed": 0, "errors": 0})
        h["videos"] += 1
        h["rgb_computed"] += computed["rgb"]
        for segment in video.get("p_use", []):
            p = segment[MODALITIES.index("rgb")] if len(segment) == len(MODALITIES) else None
            if p is not None:
                rgb_probs += 1
                near += 0.4 <= p <= 0.6
        if video["correct"]:
            continue
        h["errors"] += 1
        deciding = [m for m in MODALITIES if bits[video["prediction"]][m] != bits[label][m]]
        for m in deciding:
            by_modality[m]["computed" if computed[m] else "not computed"] += 1
        got = [computed[m] for m in deciding]
        kind = "outvoted" if all(got) else "not computed" if not any(got) else "mixed"
        kinds[kind] += 1
        wrong.append({"id": video["id"], "label": label, "prediction": video["prediction"], "deciding": deciding,
                      "kind": kind, "computed": {m: computed[m] for m in deciding}})
    return {"videos": videos, "errors": len(wrong), "kinds": kinds, "by_deciding_modality": by_modality,
            "rgb_by_hue": {f"hue {value}": counts for value, counts in sorted(hue.items())},
            "rgb_p_use_near_threshold": near / rgb_probs if rgb_probs else None, "wrong": wrong}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training folders (with eval-test/) or eval folders")
    parser.add_argument("--data", type=Path, default=Path("runs/demo/data"), help="the generator's folder")
    parser.add_argument("--json", type=Path, help="write every run's analysis here")
    args = parser.parse_args(argv)
    truth, bits = load_truth(args.data)
    results = {}
    for run in args.runs:
        decisions = json.loads(decisions_path(run).read_text(encoding="utf-8"))
        result = analyse(decisions, truth, bits)
        results[str(run)] = result
        hues = ", ".join(f"{name}: RGB computed in {c['rgb_computed']}/{c['videos']}, {c['errors']} wrong"
                         for name, c in result["rgb_by_hue"].items())
        kinds = ", ".join(f"{kind} {count}" for kind, count in result["kinds"].items())
        deciding = ", ".join(f"{m} {c['computed']}/{c['computed'] + c['not computed']}"
                             for m, c in result["by_deciding_modality"].items() if c["computed"] + c["not computed"])
        near = result["rgb_p_use_near_threshold"]
        print(f"{run}: {result['errors']} of {result['videos']} wrong ({kinds}); deciding modality with an "
              f"informative cell computed: {deciding or '-'}; {hues}; RGB P(use) in 0.4-0.6: "
              f"{'-' if near is None else f'{100 * near:.0f} %'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
