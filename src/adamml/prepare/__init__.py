"""Raw videos to a prepared store: decoding, optical flow, store layout, importers (`adamml prepare`)."""
