"""raysr.report: the HTML report of a real manifest, checked as text and in headless Chromium."""

from __future__ import annotations

import datetime as dt
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from clips import nearest2x, write_clip
from s3_fixtures import s3_bucket, s3_env, s3_proxy, s3_server  # noqa: F401

from raysr import storage
from raysr.cli import main
from raysr.manifest import SCHEMA, ManifestWriter, new_row
from raysr.report import write_report
from raysr.report._data import STAGE_COLUMNS, thresholds
from raysr.report._images import detailed_box, resized_region
from raysr.video import upscale_video

CHROMIUM = Path("/usr/bin/chromium")
SECTIONS = ("summary", "runs", "throughput", "stages", "load", "metrics", "failures", "flagged", "compare")
FIGURES = 4  # throughput, stages, load, metrics


class _Page(HTMLParser):
    """Collects ids, src/href attributes and element counts by class."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.cards: dict[str, str] = {}
        self._card: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        if "id" in attributes:
            self.ids.add(attributes["id"])
        self.links += [value for name, value in attrs if name in ("src", "href") and value is not None]
        self._card = attributes.get("data-count", self._card)  # the number is in the card's <b>

    def handle_data(self, data: str) -> None:
        if self._card and data.strip():
            self.cards[self._card] = data.strip()
            self._card = None


def _parse(path: Path) -> tuple[str, _Page]:
    document = path.read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(document)
    return document, parsed


# --- the file itself ------------------------------------------------------------------------------


def test_sections_counts_and_latest_rows(report_html, built_manifest):
    document, page = _parse(report_html)
    assert set(SECTIONS) <= page.ids
    counts = {status: int(page.cards[status]) for status in built_manifest.latest_counts}
    assert counts == built_manifest.latest_counts  # retry.png: its run-2 ok row, not the run-1 error
    assert int(page.cards["items"]) == sum(built_manifest.latest_counts.values())
    assert "timed out" not in document  # the superseded run-1 error is not a failure any more


def test_self_contained_no_external_urls(report_html):
    document, page = _parse(report_html)
    assert page.links, "expected embedded images and nav anchors"
    assert all(link.startswith(("data:", "#")) for link in page.links), [link[:60] for link in page.links]
    assert document.count("Plotly.newPlot") == FIGURES
    assert len(re.findall(r"\* plotly\.js v\d", document)) == 1  # plotly.js inlined, once


def test_images_embedded_as_thumbnails_and_crops(report_html, built_manifest):
    document, page = _parse(report_html)
    jpegs = [link for link in page.links if link.startswith("data:image/jpeg;base64,")]
    pngs = [link for link in page.links if link.startswith("data:image/png;base64,")]
    # Each comparable item: input + output thumbnails; each with an output: 2 crops + 2 slider layers.
    compared = built_manifest.images_with_output + built_manifest.videos_with_output
    assert len(jpegs) == 2 * compared + 1  # + the input thumbnail of "gone.png"
    assert len(pngs) == 4 * compared
    assert document.count('type="range"') == compared
    assert all(len(link) < 200_000 for link in jpegs + pngs)  # bounded thumbnails


def test_hostile_strings_are_text(report_html, built_manifest):
    document, _ = _parse(report_html)
    assert built_manifest.hostile_message not in document
    assert html.escape(built_manifest.hostile_message) in document  # the failures table shows it as text
    assert "<img src=x" not in document
    assert html.escape(built_manifest.hostile_name) in document


def test_missing_output_gives_placeholder_and_note(report_html, built_manifest):
    document, _ = _parse(report_html)
    assert "image unavailable" in document
    assert document.count(f"could not read {html.escape(built_manifest.missing_output)}") == 1


def test_failures_flagged_videos_and_thresholds(report_html):
    document, _ = _parse(report_html)
    failures = document[document.index('id="failures"'):document.index('id="flagged"')]
    assert failures.count("<tr>") == 1 + 2 and "OutOfMemory" in failures and "truncated" in failures
    flagged = document[document.index('id="flagged"'):document.index('id="compare"')]
    assert "dull.png" in flagged and "lr_psnr 15.2 &lt; 20" in flagged
    assert "0.00234" in flagged  # a photo's sharpness, to significant digits (not "0.00")
    videos = document[document.index('id="videos"'):document.index('id="compare"')]
    assert "h264" in videos and 'href="#videos"' in document
    # The 48-frame clip is compared on its middle frame, input and output at the same time.
    assert "frame at 1.000 s" in videos and videos.count('type="range"') == 1
    assert "input frame, bicubic: crop" in videos
    assert "flag if \\u003c 20" in document  # threshold in the histogram title (plotly's JSON escapes '<')


def test_empty_manifest_says_none(tmp_path):
    document = write_report(str(tmp_path / "nothing-here"), tmp_path / "r.html").read_text()
    assert document.count('class="none"') >= 6 and "Plotly.newPlot" not in document
    assert 'data-count="items"><b>0</b>' in document


def test_only_errors(tmp_path):
    writer = ManifestWriter(str(tmp_path / "m"), job_id="bad", run_id="r1")
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    writer.append([new_row(item_id=f"e{n}", input_uri=f"/in/{n}.png", status="error", error_stage="read",
                           error_type="empty", error_message="file is empty", started_at=at, finished_at=at)
                   for n in range(3)])
    writer.flush()
    document = write_report(str(tmp_path / "m"), tmp_path / "r.html").read_text()
    assert 'data-count="error"><b>3</b>' in document
    assert "no metrics recorded" in document and "no ok or flagged image" in document
    assert document.count("Plotly.newPlot") == 1  # only throughput has something to draw


def test_a_nightly_run_that_skipped_everything_still_shows_the_archive(tmp_path, photo):
    """The state is each item's latest outcome: run 2 skipped every item, yet the report counts
    them ok, draws their metrics and compares them; the run facts say what run 2 did."""
    root, rows = tmp_path / "job", []
    for index in range(3):
        source, output = tmp_path / "in" / f"{index}.png", tmp_path / "out" / f"{index}.png"
        small = np.ascontiguousarray(photo[100 + 40 * index:148 + 40 * index, 200:248])
        for path, pixels in ((source, small), (output, cv2.resize(small, (96, 96), interpolation=cv2.INTER_CUBIC))):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(cv2.imencode(".png", pixels)[1].tobytes())
        rows.append(dict(item_id=f"i{index}", input_uri=str(source), output_uri=str(output), kind="image"))
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for run_id, status, extra in (("r1", "ok", {"lr_psnr": 33.0, "upscale_s": 1.0}), ("r2", "skipped", {})):
        writer = ManifestWriter(str(root), job_id="nightly", run_id=run_id)
        day = dt.timedelta(days=1 if run_id == "r2" else 0)
        writer.append([new_row(**row, status=status, started_at=at + day, finished_at=at + day, **extra)
                       for row in rows])
        writer.flush()
    document = write_report(str(root), tmp_path / "r.html").read_text()
    assert 'data-count="ok"><b>3</b>' in document and 'data-count="skipped"><b>0</b>' in document
    assert "latest run: skipped</td><td class=\"num\">3<" in document and "r2" in document
    assert document.count('type="range"') == 3 and "no metrics recorded" not in document
    runs = document[document.index('id="runs"'):document.index('id="throughput"')]
    assert "Runs (2, newest first)" in runs and runs.index(">r2<") < runs.index(">r1<")
    cells = re.findall(r"<tr>(.*?)</tr>", runs)
    numbers = [re.findall(r'class="num">([^<]*)<', row) for row in cells[1:]]
    # rows, processed, ok, error, skipped, flagged per run: r2 skipped all three, r1 did them
    assert [row[1:7] for row in numbers] == [["3", "0", "0", "0", "3", "0"], ["3", "3", "3", "0", "0", "0"]]


def test_arguments_checked():
    with pytest.raises(ValueError, match="crop_px"):
        write_report("x", "y.html", crop_px=4)
    with pytest.raises(ValueError, match="sample"):
        write_report("x", "y.html", sample=-1)


def test_manifest_and_images_on_s3(s3_bucket, photo, tmp_path):
    root = f"s3://{s3_bucket}/job"
    small = np.ascontiguousarray(photo[200:248, 200:248])
    big = cv2.resize(small, (96, 96), interpolation=cv2.INTER_CUBIC)
    for name, pixels in (("in/a.png", small), ("out/a.png", big)):
        storage.write_bytes(f"{root}/{name}", cv2.imencode(".png", pixels)[1].tobytes())
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    writer = ManifestWriter(f"{root}/_raysr/manifest", job_id="s3job", run_id="r1")
    writer.append([new_row(item_id="a", input_uri=f"{root}/in/a.png", output_uri=f"{root}/out/a.png", status="ok",
                           kind="image", lr_psnr=35.0, upscale_s=0.2, started_at=at, finished_at=at)])
    writer.flush()
    document = write_report(f"{root}/_raysr/manifest", tmp_path / "r.html").read_text()
    assert 'data-count="ok"><b>1</b>' in document and "s3job" in document
    assert document.count("data:image/jpeg;base64,") == 2 and document.count('type="range"') == 1
    assert "#videos" not in document  # no video, no link to a section that is not there


def test_videos_on_s3_are_compared(s3_bucket, tmp_path):
    """A video on S3 is opened as a seekable pyarrow file, not copied to disk first."""
    root = f"s3://{s3_bucket}/vjob"
    source, target = tmp_path / "in.mp4", tmp_path / "out.mp4"
    write_clip(source, frames=48, size=(64, 48), fps=24, audio=None)
    upscale_video(source, target, nearest2x)
    for name, path in (("in/v.mp4", source), ("out/v.mp4", target)):
        storage.write_bytes(f"{root}/{name}", path.read_bytes())
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    writer = ManifestWriter(f"{root}/_raysr/manifest", job_id="s3video", run_id="r1")
    writer.append([new_row(item_id="v", input_uri=f"{root}/in/v.mp4", output_uri=f"{root}/out/v.mp4",
                           status="ok", kind="video", frames_in=48, frames_out=48, duration_s=2.0,
                           started_at=at, finished_at=at)])
    writer.flush()
    document = write_report(f"{root}/_raysr/manifest", tmp_path / "r.html").read_text()
    videos = document[document.index('id="videos"'):document.index('id="compare"')]
    assert "frame at 1.000 s" in videos and videos.count("data:image/jpeg;base64,") == 2
    assert "could not read" not in videos


# --- the pieces -----------------------------------------------------------------------------------


def test_stage_columns_come_from_the_schema():
    assert {"read_s", "upscale_s", "color_s", "metrics_s", "write_s"} <= set(STAGE_COLUMNS)
    assert "duration_s" not in STAGE_COLUMNS  # a video's length, not a stage
    assert set(STAGE_COLUMNS) <= set(SCHEMA.names)


def test_thresholds_read_back_from_flag_reasons(built_manifest):
    from raysr.manifest import read_manifest

    assert thresholds(read_manifest(built_manifest.uri)) == {"lr_psnr": ("<", 20.0), "delta_e": (">", 12.0)}


def test_resized_region_matches_a_full_bicubic_resize(photo):
    small = np.ascontiguousarray(photo[:40, :50])
    full = cv2.resize(small, (200, 160), interpolation=cv2.INTER_CUBIC)
    box = (60, 40, 32, 24)
    region = resized_region(small, 4.0, 4.0, box)
    difference = np.abs(region.astype(int) - full[40:64, 60:92].astype(int))
    assert difference.max() <= 1  # rounding only


def test_detailed_box_finds_the_texture():
    image = np.full((96, 96, 3), 128, np.uint8)
    image[64:96, 0:32] = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    x, y = detailed_box(image, 32)
    assert x <= 16 and y >= 48
    assert detailed_box(np.zeros((40, 40, 3), np.uint8), 20) == (10, 10)  # flat: the centre


def test_cli_report(built_manifest, tmp_path, capsys):
    out = tmp_path / "cli" / "report.html"
    assert main(["report", built_manifest.uri, "--out", str(out), "--sample", "2"]) == 0
    assert out.is_file() and str(out) in capsys.readouterr().out
    assert out.read_text().count('type="range"') == 2 + 1  # two images, and the one video (up to two)


# --- a real browser -------------------------------------------------------------------------------

_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt install chromium)")
def test_renders_in_chromium_without_errors_or_requests(report_html, built_manifest, tmp_path):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: request.url.startswith(("file:", "data:"))
                    or requests.append(request.url))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(report_html.as_uri())
            drawn = "[...document.querySelectorAll('.js-plotly-plot')].filter(g => g.querySelector('.main-svg'))"
            page.wait_for_function(f"{drawn}.length >= {FIGURES}", timeout=15_000)
            # The hostile strings are on the page as visible text, not as elements.
            assert page.locator("h3", has_text=built_manifest.hostile_name).count() == 1
            assert page.locator("td.msg", has_text=built_manifest.hostile_message).count() == 1
            slider = page.locator(".slider").first
            slider.locator("input[type=range]").fill("20")
            assert slider.evaluate("s => s.style.getPropertyValue('--pos')") == "20%"
            assert page.locator(".slider img.before").first.evaluate("i => i.naturalWidth") > 0
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == [] and requests == [] and dialogs == []
    pixels = cv2.imread(str(shot))
    assert pixels is not None and pixels.shape[0] > 900 and pixels.std() > 20
