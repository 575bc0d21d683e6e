"""``adamml flops``: the measured cost of each component of a configured model, per segment and per video
(paper Sec. 4 "GFLOPs"; supplementary Table 2). GFLOPs in this field are multiply-accumulates (GMACs)."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from adamml.cli.arguments import positive_int
from adamml.config import load_config
from adamml.modalities import get_modality

if TYPE_CHECKING:
    from adamml.inference.gflops import ModelCosts


def _shape(shape: tuple[int, ...]) -> str:
    return " x ".join(str(n) for n in shape)


def cost_tables(costs: ModelCosts, num_segments: int, title: str) -> tuple[Table, Table]:
    """A per-segment table of every component and a per-video table for ``num_segments`` segments.

    Figures are GMACs, or MMACs for models whose recognizers cost less than 1 GMAC per segment (tiny).
    """
    from adamml.inference.gflops import ZERO

    scale, unit = (1.0, "GMACs") if costs.always_on().conv >= 1.0 else (1e3, "MMACs")

    def fmt(value: float, digits: int) -> str:
        return f"{value * scale:.{digits}f}"

    seg = Table(title=f"{title}: cost per segment ({unit}; the field's \"GFLOPs\" are GMACs)")
    seg.add_column("component")
    seg.add_column("input per segment")
    seg.add_column("conv layers (paper)", justify="right")
    seg.add_column("all layers", justify="right")
    for name in costs.modalities:
        cost = costs.recognizers[name]
        net = "TSN ResNet" if get_modality(name).visual else "MobileNetV2"
        seg.add_row(f"{name} recognizer ({net})", _shape(costs.recognizer_inputs[name]),
                    fmt(cost.conv, 4), fmt(cost.all, 4))
    for name, cost in costs.extractors.items():
        stands_for = [m for m in costs.modalities if get_modality(m).policy_proxy == name and m != name]
        label = f"policy: {name} MobileNetV2" + (f" (for {', '.join(stands_for)})" if stands_for else "")
        seg.add_row(label, _shape(costs.extractor_inputs[name]), fmt(cost.conv, 4), fmt(cost.all, 4))
    seg.add_row("policy: MLP + LSTM cell + heads", "features", fmt(costs.policy_head.conv, 4),
                fmt(costs.policy_head.all, 4))
    policy = costs.policy()
    seg.add_row("[bold]policy total[/bold]", "", fmt(policy.conv, 4), fmt(policy.all, 4))
    always = costs.always_on()
    baseline = costs.fusion != ZERO or costs.fusion_video != ZERO  # a fusion baseline: lateral connections, gates
    if baseline:
        seg.add_row("fusion modules (per segment; per video)", "", f"{fmt(costs.fusion.conv, 4)}; "
                    f"{fmt(costs.fusion_video.conv, 4)}", f"{fmt(costs.fusion.all, 4)}; {fmt(costs.fusion_video.all, 4)}")
        seg.add_row("[bold]all recognizers + fusion modules[/bold]", "", fmt(always.conv, 4), fmt(always.all, 4))
    else:
        seg.add_row("[bold]all recognizers[/bold]", "", fmt(always.conv, 4), fmt(always.all, 4))

    video = Table(title=f"{title}: cost per video, {num_segments} segments ({unit})")
    video.add_column("what runs")
    video.add_column("conv layers (paper)", justify="right")
    video.add_column("all layers", justify="right")
    rows = [
        ("always-on " + ("baseline with its fusion modules" if baseline else "weighted fusion")
         + ": every recognizer on every segment, no policy", always * num_segments + costs.fusion_video),
        ("policy alone, on every segment (AdaMML using nothing)", policy * num_segments),
        ("AdaMML using every modality on every segment (upper bound)",
         (policy + always - costs.fusion) * num_segments),
    ]
    for name in costs.modalities:
        rows.append((f"{name} recognizer alone, every segment", costs.recognizers[name] * num_segments))
    for label, cost in rows:
        video.add_row(label, fmt(cost.conv, 2 if scale == 1.0 else 3), fmt(cost.all, 2 if scale == 1.0 else 3))
    return seg, video


def run(args: argparse.Namespace) -> int:
    """Print the cost tables of the configured model."""
    console = Console()
    if not console.is_terminal:  # piped or redirected: do not wrap the tables at 80 columns
        console = Console(width=120)
    from adamml.inference.gflops import measure_costs

    cfg = load_config(args.config, args.set or [])
    model_cfg = cfg.model
    if args.num_segments is not None:
        model_cfg = dataclasses.replace(model_cfg, num_segments=args.num_segments)
    costs = measure_costs(model_cfg)
    title = f"{args.config} ({' + '.join(model_cfg.modalities)})"
    for table in cost_tables(costs, model_cfg.num_segments, title):
        console.print(table)
    console.print(
        "conv layers: convolutions only, as the paper counts. all layers: convolutions + fully connected layers + "
        "the policy's LSTM cell (counted analytically); batch norm, activations, pooling and element-wise "
        "operations are in neither. Measured with torch.utils.flop_counter on a forward pass at the configured "
        "input sizes; 1 GMAC = 10^9 multiply-accumulates (1 MMAC = 10^6). A real AdaMML video costs the policy "
        "on every segment plus each recognizer on the segments that selected it.", highlight=False)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``flops`` sub-command."""
    parser = subparsers.add_parser(
        "flops", help="measured cost (GMACs) of each model component, per segment and per video",
        description="Measure the cost of every component of a configured AdaMML model (conv layers only, as the "
                    "paper counts, and all layers) and the always-on total for a video.")
    parser.add_argument("--config", default="paper-rgb-flow-audio",
                        help="preset name (e.g. paper-rgb-audio, tiny) or YAML path (default: %(default)s)")
    parser.add_argument("--num-segments", type=positive_int, default=None,
                        help="segments per video (default: the config's model.num_segments)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a config key, e.g. --set model.input_size=112 (repeatable)")
    parser.set_defaults(func=run)
