"""The embedded audio-visual benchmark (`adamml synth`), and writing real video files from arrays.

Each class is a triple of signature values, one per modality: a hue (RGB), a motion (flow: direction and speed)
and a pitch (audio). How classes map to values is the config's `code`: "product" (the default and the demo:
distinct triples over a few values, so each modality alone narrows the class down to a subset and with 8 classes
all three are needed), "redundant" (class k has value k everywhere: each modality alone names the class) or
"full" (every combination of `values` per modality, e.g. 3 x 3 x 3; a modality with one value carries nothing).
Each modality is informative in some cells (segments) of a video and the ground truth says which, so the policy's
choices can be checked; with `distractor_rate`, an uninformative cell may instead show a misleading cue (another
value of that modality), which the ground truth flags too. `VARIANTS` names a family of such benchmarks
(`variant_config`), so that a recipe tuned on the demo can be checked on data it was not tuned for. Everything is
a pure function of `SynthConfig` and the seed: `plan_dataset` plans, `render_cell_frames` / `render_cell_audio`
render, `generate` writes. Why it is built this way: docs/design.md, "The built-in benchmark".

The package: `design` (the config, the signatures, informative cells), `variants`, `plans`, `render`, `writing`
(the dataset on disk) and `clips` (video files from arrays).
"""

from __future__ import annotations

from adamml.workflows.synthetic.clips import (  # noqa: F401
    _encoder_frame,
    moving_square_clip,
    tone,
    write_video,
)
from adamml.workflows.synthetic.design import (  # noqa: F401
    class_design,
    class_name,
    class_signatures,
    ClassSignature,
    CODES,
    config_signature_table,
    forced_draw_probability,
    FORMAT_VERSION,
    full_classes,
    hue_deg,
    hue_jitter_deg,
    MAX_CODE_VALUES,
    MODALITIES,
    modality_values,
    motion,
    pitch_hz,
    pitch_jitter_semitones,
    sample_informative,
    signature_table,
    signature_values,
    SPLITS,
    SynthConfig,
)
from adamml.workflows.synthetic.plans import (  # noqa: F401
    CellPlan,
    plan_dataset,
    plan_video,
    video_id,
    VideoPlan,
)
from adamml.workflows.synthetic.render import (  # noqa: F401
    cell_sample_range,
    render_cell_audio,
    render_cell_frames,
    render_video,
)
from adamml.workflows.synthetic.variants import (  # noqa: F401
    Variant,
    variant_config,
    VARIANTS,
)
from adamml.workflows.synthetic.writing import (  # noqa: F401
    generate,
    read_meta,
    write_index,
    write_synth_video,
)
