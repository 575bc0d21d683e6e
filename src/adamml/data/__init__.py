"""Reading a prepared store into per-segment samples keyed by modality (paper Sec. 4, supplementary Sec. B)."""
