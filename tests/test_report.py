"""The HTML report (`adamml report`): what the page holds for each kind of folder, bad input, and the page itself
in a real headless Chromium: rows, filters, sorting and the plot's tooltips, after its script ran."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from adamml.cli import main
from adamml.cli.report import DEFAULT_CELLS
from adamml.report.browser import Browser, find_browser
from adamml.report.page import write_page
from adamml.report.plots import nice_ticks
from adamml.report.thumbnails import MAX_CELLS, segment_centres
from tests.report_inputs import made_up_demo, made_up_evaluation

SCREENSHOT = Path(__file__).resolve().parents[1] / "runs" / "test-report" / "report.png"


def _data(page: Path) -> dict:
    """The JSON the page embeds for its script."""
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page.read_text(), re.S)
    return json.loads(match.group(1))


def test_page_of_an_evaluation_is_self_contained(tmp_path, capsys):
    folder = made_up_evaluation(tmp_path / "run" / "eval-test", 10, store=tmp_path / "store")
    assert main(["report", str(folder)]) == 0
    page = folder / "report.html"
    assert f"report page: {page}" in capsys.readouterr().out
    text = page.read_text()
    data = _data(page)
    assert len(data["videos"]) == 10 and data["modalities"] == ["rgb", "flow", "audio"]
    assert all(v["t"] >= 0 for v in data["videos"])  # every video has its thumbnails
    assert "data:image/jpeg;base64," in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # nothing fetched
    assert 'id="scatter"' in text and 'id="histogram"' in text and 'id="classes"' in text
    decisions = json.loads((folder / "decisions.json").read_text())
    first = decisions[0]
    record = data["videos"][0]
    assert record["ok"] == first["correct"] and record["g"] == pytest.approx(first["gflops"])
    assert [data["classes"][c] for c, _p in record["p"]] == [c for c, _p in first["top5"]]
    assert record["d"][0] == sum(1 << j for j, m in enumerate(data["modalities"]) if m in first["segments"][0])


def test_demo_page_has_every_method_and_the_ground_truth(tmp_path):
    demo = made_up_demo(tmp_path / "demo")
    result = write_page(demo)
    assert result.path == demo / "report.html" and result.videos == 12 and result.warnings == []
    data = _data(result.path)
    assert data["truth"] and all(len(v["i"]) == len(v["d"]) for v in data["videos"])
    text = result.path.read_text()
    assert "Weighted fusion" in text and "AdaMML within 1 point of fusion" in text
    assert text.count('class="pt k-') == 2 + 3  # two methods and AdaMML's sweep of three thresholds


def test_unimodal_points_are_told_apart_by_their_modality():
    from adamml.report.plots import accuracy_gflops

    methods = [{"label": label, "stage": stage, "modalities": modalities, "gflops": gflops, "top1": top1, "sweep": []}
               for label, stage, modalities, gflops, top1 in (("RGB", "unimodal", "rgb", 0.11, 21.0),
                                                             ("Audio", "unimodal", "audio", 0.03, 25.0),
                                                             ("Weighted fusion", "fusion", "rgb+audio", 0.14, 80.0))]
    plot = accuracy_gflops(methods)
    expected = ["k-unimodal u-rgb", "k-unimodal u-audio", "k-fusion"]
    assert [p["css"] for p in plot["points"]] == expected == [entry["css"] for entry in plot["legend"]]


def test_bad_input_is_named_and_the_page_written_without_what_is_missing(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not an evaluation, run, demo or compare folder" in capsys.readouterr().err
    # a training run that was never evaluated: a page that says so
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("model: {}\n")
    assert main(["report", str(run)]) == 0
    assert "without an evaluation" in capsys.readouterr().err
    assert "without an evaluation" in (run / "report.html").read_text()
    # a store that has moved: no thumbnails, a warning, and --data brings them back
    folder = made_up_evaluation(tmp_path / "ada" / "eval-test", 6, store=tmp_path / "store")
    shutil.move(tmp_path / "store", tmp_path / "moved")
    assert main(["report", str(folder)]) == 0
    assert "not found (moved?)" in capsys.readouterr().err
    assert all(v["t"] == -1 for v in _data(folder / "report.html")["videos"])
    assert main(["report", str(folder), "--data", str(tmp_path / "moved"), "--thumbnails", "8"]) == 0
    assert "left out to keep the page small" in capsys.readouterr().err
    assert sum(v["t"] >= 0 for v in _data(folder / "report.html")["videos"]) == 2  # 8 cells of 4 segments
    (folder / "decisions.json").write_text("[not json")
    assert main(["report", str(folder)]) == 2
    assert "decisions.json: not valid JSON" in capsys.readouterr().err


def test_a_page_that_cannot_be_written_leaves_no_page_of_an_earlier_run(tmp_path, monkeypatch):
    import errno

    from rich.console import Console

    import adamml.report.page as page

    folder = made_up_evaluation(tmp_path / "eval", 6)
    assert page.write_page_after(folder, Console(file=open(tmp_path / "log", "w"))) is not None
    assert (folder / "report.html").exists()

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(page, "atomic_write_text", full_disk)
    log = tmp_path / "log2"
    with open(log, "w") as handle:
        assert page.write_page_after(folder, Console(file=handle, width=300)) is None
    assert not (folder / "report.html").exists()  # not the earlier run's page beside this run's report.json
    assert "No space left on device" in log.read_text() and "was removed" in log.read_text()


def test_a_method_without_a_finite_top1_is_not_drawn(tmp_path):
    from adamml.report.collect import find_source
    from adamml.report.page import page_context

    folder = made_up_demo(tmp_path / "demo")
    report = json.loads((folder / "report.json").read_text())
    report["reports"]["fusion"]["top1"] = float("nan")  # as a report of an empty split would hold it
    (folder / "report.json").write_text(json.dumps(report))
    context = page_context(find_source(folder))
    drawn = {p["method"] for p in context["scatter"]["points"]}
    assert "Weighted fusion" not in drawn and "AdaMML" in drawn
    assert all(str(p["y"]) != "nan" for p in context["scatter"]["points"])
    assert write_page(folder).path.exists()


def test_thumbnails_and_ticks():
    assert segment_centres(100, 4, 8) == [13, 38, 63, 88]  # middles of the test windows (starts 9, 34, ...)
    assert segment_centres(3, 4, 32) == [2, 2, 2, 2]  # a short video: clamped, never out of range
    assert nice_ticks(0, 0.34) == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert DEFAULT_CELLS == MAX_CELLS  # the command's default, written out there so that parsing stays light


needs_browser = pytest.mark.skipif(find_browser() is None, reason="no headless Chromium on PATH "
                                   "(`apt-get install chromium-headless-shell`; make install / .ci/run do it)")


@needs_browser
def test_the_page_works_in_a_real_browser(tmp_path):
    demo = made_up_demo(tmp_path / "demo", videos=30)
    page = write_page(demo).path
    decisions = json.loads((demo / "adamml" / "eval-test" / "decisions.json").read_text())
    wrong = sorted(v["id"] for v in decisions if not v["correct"])
    rows = "Array.from(document.querySelectorAll('#rows tr')).map(r => r.dataset.id)"
    with Browser() as browser:
        browser.open(page.as_uri(), "document.body.dataset.ready")
        assert browser.evaluate(rows) == [v["id"] for v in decisions]
        # strips: one thumbnail and one chip per modality per segment, the informative cells ringed
        assert browser.evaluate("document.querySelectorAll('#rows tr:first-child .seg').length") == 4
        assert browser.evaluate("document.querySelectorAll('#rows .th:not(.none)').length") == 30 * 4
        assert browser.evaluate("document.querySelectorAll('#rows .chip.inf').length") > 0
        # filters and sorting, from the URL fragment as a link would set them
        browser.open(page.as_uri() + "#filter=wrong&sort=gflops-desc", "document.body.dataset.ready")
        shown = browser.evaluate(rows)
        assert sorted(shown) == wrong and browser.evaluate("document.querySelectorAll('#rows tr.right').length") == 0
        costs = {v["id"]: v["gflops"] for v in decisions}
        assert [costs[i] for i in shown] == sorted((costs[i] for i in shown), reverse=True)
        assert browser.evaluate("document.getElementById('count').textContent") == f"{len(wrong)} of 30 videos"
        browser.open(page.as_uri() + "#class=class%202&modality=-flow", "document.body.dataset.ready")
        expected = [v["id"] for v in decisions if v["labels"] == ["class 2"]
                    and not any("flow" in s for s in v["segments"])]
        assert browser.evaluate(rows) == expected
        # the controls change the rows and write the fragment
        browser.evaluate("const f = document.getElementById('controls'); f.elements['class'].value = '';"
                         "f.elements.modality.value = ''; f.elements.filter.value = 'right';"
                         "f.dispatchEvent(new Event('input'))")
        assert len(browser.evaluate(rows)) == 30 - len(wrong)
        assert browser.evaluate("location.hash") == "#filter=right"
        # the plot: hovering a point shows its method and threshold
        box = browser.evaluate("(() => { const c = document.querySelector('#scatter circle.k-sweep');"
                               "c.scrollIntoView({block: 'center'}); const r = c.getBoundingClientRect();"
                               "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        browser.mouse(*box)
        browser.wait_for("!document.getElementById('tip').hidden", timeout=5)
        assert re.match(r"AdaMML, threshold 0\.\d: ", browser.evaluate("document.getElementById('tip').textContent"))
    # the command's own screenshot, of the whole page
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert main(["report", str(demo), "--screenshot", str(SCREENSHOT)]) == 0
    assert SCREENSHOT.stat().st_size > 20_000 and SCREENSHOT.read_bytes().startswith(b"\x89PNG")
