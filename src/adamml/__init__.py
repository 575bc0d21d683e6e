"""adamml: adaptive multi-modal video recognition (AdaMML, Panda et al., ICCV 2021)."""

__version__ = "0.1.0"
