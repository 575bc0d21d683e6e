"""Configuration: a few frozen dataclasses, YAML in, resolved YAML out.

The numbers of the paper's setting (Sec. 4 and supplementary Sec. B) are the defaults: ResNet-50 recognizers on
8 frames of 224 x 224, a MobileNetV2 audio recognizer on the 256 x 256 spectrogram, a MobileNetV2 policy on
4 frames of 160 x 160, an MLP 2048-2048, an LSTM of 256, learnable weighted late fusion, 10 test segments.

A preset is a YAML file shipped in ``adamml/configs/NAME.yaml`` and is loaded by its bare name; any other YAML
file is loaded by path. Keys missing from a file take the defaults below; unknown keys are errors naming the key
and the file. ``overrides`` are ``section.key=value`` strings whose value is parsed as YAML
(``model.policy.threshold=0.3``, ``model.modalities=[rgb,audio]``).

``Config`` is the top level; later parts add their own sections (``data``, ``train``) next to ``model``.

The package: `schema` (the dataclasses) and `yaml_io` (YAML in, resolved YAML out).
"""

from __future__ import annotations

from adamml.config.schema import (  # noqa: F401
    AudioNetConfig,
    BASELINE_KINDS,
    BlendConfig,
    Config,
    Conventions,
    DataConfig,
    DecisionGradient,
    Decode,
    FusionConfig,
    FusionKind,
    LATE_FUSION_KINDS,
    ModelConfig,
    OperatingPointConfig,
    OperatingTarget,
    OptimConfig,
    PolicyConfig,
    PolicyFeed,
    PolicyHeadInput,
    Precision,
    PretrainTarget,
    ResNetConfig,
    SegmentMean,
    SkippedLogits,
    TrainConfig,
)
from adamml.config.yaml_io import (  # noqa: F401
    config_changes,
    config_from_dict,
    config_to_dict,
    ConfigError,
    dump_config,
    load_config,
    parse_yaml,
    preset_names,
)
