"""Networks of AdaMML: recognizers, policy, fusion and the full model (paper Sec. 3)."""

from adamml.models.adamml import AdaMML, AdaMMLOutput
from adamml.models.baselines import FusionBaseline
from adamml.models.build import build_model, load_imagenet_weights
from adamml.models.fusion import LateFusion
from adamml.models.mobilenet import MobileNetV2Extractor, MobileNetV2Recognizer
from adamml.models.policy import PolicyNetwork, PolicyOutput
from adamml.models.state import CheckpointError
from adamml.models.tsn_resnet import TSNResNet

__all__ = [
    "AdaMML", "AdaMMLOutput", "CheckpointError", "FusionBaseline", "LateFusion", "MobileNetV2Extractor",
    "MobileNetV2Recognizer", "PolicyNetwork", "PolicyOutput", "TSNResNet", "build_model", "load_imagenet_weights",
]
