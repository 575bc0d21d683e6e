"""Workflows that chain the stages: the demo, compare, the built-in benchmark (synth) and the run-once steps."""
