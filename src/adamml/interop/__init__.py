"""Interop with the field's assets: the official AdaMML checkpoints."""
