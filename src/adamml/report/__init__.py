"""The HTML report of an evaluation, a run, the demo or a comparison: one self-contained `report.html` to browse
what the policy computed, video by video (`adamml report`; written also by `adamml eval`, `demo` and `compare`).

`collect` finds the evaluations in a folder, `thumbnails` cuts the segment thumbnails out of the store's frames,
`plots` lays out the inline SVG plots, `page` renders the page with Jinja2 (templates and the small script in
`templates/`), `browser` drives a headless Chromium (the tests, the benchmark and ``--screenshot``).
"""
