"""Inference: evaluation, one video's prediction, decisions, GFLOPs, checkpoints, the operating point, speed,
export."""
