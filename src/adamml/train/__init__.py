"""Training: the paper's stages (unimodal, fusion, random policy, AdaMML), checkpoints and distributed set-up."""
