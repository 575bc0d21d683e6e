"""Size and load time of the HTML report (`adamml report`) in headless Chromium: for a made-up evaluation of
10,000 videos (10 segments, 3 modalities, 200 classes, a store of small frames) and for any folders given.

    .venv/bin/python benchmarks/report_page.py                        # the made-up 10,000 videos
    .venv/bin/python benchmarks/report_page.py --folders runs/demo    # and the demo's page

For each page: the seconds to write it, its size, the time from the browser's request until the page's script
has drawn the first rows (median of `--loads` loads, each in a fresh document; the script's own clock is printed
too), and the time one change of filter and sort takes (wrong only, most expensive first) over all the videos.
Needs Chromium (`apt-get install chromium-headless-shell`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.report_inputs, the made-up evaluation

from adamml.report.browser import Browser  # noqa: E402
from adamml.report.page import write_page  # noqa: E402
from tests.report_inputs import made_up_evaluation  # noqa: E402

FILTER_CHANGE = ("(() => { const f = document.getElementById('controls'); const t = performance.now();"
                 "f.elements.filter.value = 'wrong'; f.elements.sort.value = 'gflops-desc';"
                 "f.dispatchEvent(new Event('input')); return performance.now() - t; })()")


def measure(folder: Path, browser: Browser, loads: int) -> dict:
    started = time.perf_counter()
    result = write_page(folder)
    write_seconds = time.perf_counter() - started
    url = result.path.resolve().as_uri()
    walls, scripts = [], []
    for _ in range(loads):
        walls.append(browser.open(url, "document.body.dataset.ready"))
        scripts.append(float(browser.evaluate("document.body.dataset.readyMs")))
    return {"page": str(result.path), "videos": result.videos, "thumbnails": result.thumbnails,
            "megabytes": result.bytes / 1e6, "write_s": write_seconds, "load_s": statistics.median(walls),
            "script_ready_ms": statistics.median(scripts), "rows_drawn": int(browser.evaluate("document.body.dataset.shown")),
            "filter_sort_ms": float(browser.evaluate(FILTER_CHANGE)), "warnings": result.warnings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=10_000, help="videos of the made-up evaluation")
    parser.add_argument("--folders", type=Path, nargs="*", default=[], help="more folders to measure")
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        made_up = made_up_evaluation(Path(tmp) / "run" / "eval-test", args.videos, classes=200, segments=10,
                                     store=Path(tmp) / "store")
        print(f"made up {args.videos} videos in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        with Browser() as browser:
            for folder in [made_up, *args.folders]:
                m = measure(folder, browser, args.loads)
                print(f"{folder}: {m['videos']} videos ({m['thumbnails']} with thumbnails), {m['megabytes']:.2f} MB, "
                      f"written in {m['write_s']:.2f} s; loads in {m['load_s']:.2f} s (median of {args.loads}; "
                      f"script done at {m['script_ready_ms']:.0f} ms, {m['rows_drawn']} rows drawn); "
                      f"filter + sort over all videos {m['filter_sort_ms']:.0f} ms")


if __name__ == "__main__":
    main()
