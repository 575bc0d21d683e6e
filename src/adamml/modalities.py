"""The modality table: what each input stream is, how it is normalised, and what the policy sees for it.

Paper Sec. 3 and supplementary Sec. B: RGB frames, optical flow (x and y of 5 consecutive frames, interleaved,
10 channels), RGB difference (5 consecutive frame differences, 15 channels) and audio (a 1-channel 256 x 256
log-spectrogram). The policy network never looks at optical flow: flow is represented by RGBDiff in the policy
(Sec. 3.1), so that no flow has to be computed to decide whether flow is worth computing.

Tensor layout of one segment of a visual modality: ``(T, C, H, W)`` with T frame positions (8 for the
recognizers, 4 for the policy) and C the channels of one frame position (``Modality.channels``): for flow, the
10-channel stack ``x0, y0, x1, y1, ..., x4, y4`` starting at that frame position; for RGBDiff the 15-channel
stack of 5 consecutive differences (RGB each). Audio: ``(1, F, W)``, the log-spectrogram.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
FLOW_MEAN: float = 0.5
FLOW_STD: float = 0.226  # the mean of the ImageNet std, as in the official code


@dataclass(frozen=True)
class Modality:
    """One input stream.

    ``channels`` is the number of channels per frame position (the input channels of the first conv).
    ``mean`` / ``std`` have one entry per channel (empty for audio: the log-spectrogram is used as is).
    ``policy_proxy`` is the modality whose data the policy looks at to decide about this one.
    """

    name: str
    channels: int
    visual: bool
    mean: tuple[float, ...]
    std: tuple[float, ...]
    policy_proxy: str
    label: str  # for people: tables, figures, the report page


MODALITIES: dict[str, Modality] = {
    "rgb": Modality("rgb", 3, True, IMAGENET_MEAN, IMAGENET_STD, "rgb", "RGB"),
    "flow": Modality("flow", 10, True, (FLOW_MEAN,) * 10, (FLOW_STD,) * 10, "rgbdiff", "Flow"),
    "rgbdiff": Modality("rgbdiff", 15, True, IMAGENET_MEAN * 5, IMAGENET_STD * 5, "rgbdiff", "RGBDiff"),
    "audio": Modality("audio", 1, False, (), (), "audio", "Audio"),
}


def get_modality(name: str) -> Modality:
    """The table entry for ``name``; a clear error for an unknown name."""
    try:
        return MODALITIES[name]
    except KeyError:
        raise ValueError(f"unknown modality {name!r}; known: {', '.join(MODALITIES)}") from None


def check_modalities(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate a modality list (known names, no repeats, not empty) and return it as a tuple."""
    names = tuple(names)
    if not names:
        raise ValueError("at least one modality is needed")
    for name in names:
        get_modality(name)
    if len(set(names)) != len(names):
        raise ValueError(f"repeated modality in {list(names)}")
    return names


def policy_modalities(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The inputs of the policy network for recognizer modalities ``names``, in order, without repeats.

    ``("rgb", "flow", "audio") -> ("rgb", "rgbdiff", "audio")``.
    """
    out: list[str] = []
    for name in check_modalities(names):
        proxy = get_modality(name).policy_proxy
        if proxy not in out:
            out.append(proxy)
    return tuple(out)


def modality_rates(text: str, modalities: Sequence[str], defaults: Mapping[str, float] | None = None
                   ) -> dict[str, float]:
    """Rates in [0, 1] per modality from ``"0.5"`` (every modality) or ``"rgb=0.4,flow=0.3"``: with `defaults`,
    modalities not named keep theirs, else every modality must be named. ValueError names the problem."""
    text = text.strip()
    try:
        if "=" not in text:
            values = dict.fromkeys(modalities, float(text))
        else:
            values = dict(defaults or {})
            for item in text.split(","):
                name, _, value = item.partition("=")
                name = name.strip().lower()
                if name not in modalities:
                    raise ValueError(f"unknown modality {name!r} (expected {', '.join(modalities)})")
                values[name] = float(value)
    except ValueError as error:
        raise ValueError(f"cannot read rates {text!r}: {error}") from None
    missing = [m for m in modalities if m not in values]
    if missing:
        raise ValueError(f"rates {text!r} give none for {', '.join(missing)} (one rate for each of "
                         f"{', '.join(modalities)}, or one number for all)")
    if any(not 0.0 <= values[m] <= 1.0 for m in modalities):
        raise ValueError(f"rates {text!r} must be between 0 and 1")
    return {m: values[m] for m in modalities}
