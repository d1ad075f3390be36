"""One function per report section, each returning safe HTML.

Every string that came from the manifest passes through :func:`text` (HTML
escape): input names, error messages and actor ids are user data, and a file
may well be called ``<script>alert(1)</script>.png``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raysr.report import _data, _images

FAILURE_COLUMNS = ("input_uri", "error_stage", "error_type", "error_message")
_MAX_TABLE_ROWS = 500  # beyond this a table is a wall; the manifest itself has every row


def text(value: object) -> str:
    """Escaped text; ``None`` as an em dash."""
    return "—" if value is None else html.escape(str(value))


def number(value: float | int | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"


def significant(value: float | None, digits: int = 3) -> str:
    """A metric whose scale varies by orders of magnitude (sharpness: ~0.002 on a photo) to
    ``digits`` significant digits, so it never prints as ``0.00``."""
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:.{digits}g}"


def none(what: str) -> str:
    return f'<p class="none">none: {text(what)}</p>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{text(title)}</h2>\n{body}\n</section>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], classes: Sequence[str] = (),
          total: int | None = None) -> str:
    """A table of already-escaped cells; ``classes`` per column (``num``, ``msg``, ``uri``)."""
    classes = list(classes) or [""] * len(headers)
    head = "".join(f"<th>{text(name)}</th>" for name in headers)
    head = f"<thead><tr>{head}</tr></thead>" if any(headers) else ""
    body = "".join(
        "<tr>" + "".join(f'<td class="{kind}">{cell}</td>' for kind, cell in zip(classes, row)) + "</tr>"
        for row in rows
    )
    hidden = (total or 0) - _MAX_TABLE_ROWS
    more = f'<p class="none">{hidden:,} more rows not shown</p>' if hidden > 0 else ""
    return f"<table>{head}<tbody>{body}</tbody></table>{more}"


def _counts_table(title: str, counts: dict[str, int]) -> str:
    rows = [(text(value), number(count)) for value, count in counts.items()]
    return f"<div><h3>{text(title)}</h3>{table((title, 'items'), rows, ('', 'num'))}</div>" if rows else ""


def summary(data: _data.ReportData, stats: dict[str, dict[str, float]]) -> str:
    """Status cards, run facts, counts by route/model/precision/kind, stage seconds."""
    counts = _data.status_counts(data.latest)
    cards = [f'<div class="card" data-count="items"><b>{data.latest.num_rows:,}</b>items</div>']
    cards += [f'<div class="card {status}" data-count="{status}"><b>{count:,}</b>{status}</div>'
              for status, count in counts.items()]
    if data.latest.num_rows == 0:
        return "".join(['<div class="cards">', *cards, "</div>", none("the manifest has no rows")])
    run = next(facts for facts in data.history if facts.run_id == data.run_id)  # gathered while reading
    facts = [
        ("job", text(data.job_id)), ("runs in manifest", number(data.runs)), ("latest run", text(data.run_id)),
        ("latest run: rows", number(data.run.num_rows)), ("latest run: processed", number(run.processed)),
        ("latest run: skipped", number(run.counts["skipped"])),
        ("latest run: wall time (s)", number(run.wall_s, 2)),
        ("latest run: items/s", number(run.processed / run.wall_s if run.wall_s else None)),
    ]
    stage_rows = [(text(name), number(item["total"]), number(item["mean"]), number(item["n"]))
                  for name, item in stats.items()]
    stage_table = table(("stage", "total s", "mean s", "items"), stage_rows, ("", "num", "num", "num"))
    parts = [
        '<div class="cards">', *cards, "</div>", '<div class="grid">',
        f"<div><h3>run</h3>{table(('', ''), facts, ('', 'num'))}</div>",
        *(_counts_table(title, _data.value_counts(data.latest, column)) for title, column in
          (("route", "route"), ("model", "model"), ("precision", "precision"), ("kind", "kind"))),
        f"<div><h3>stage seconds (latest run)</h3>{stage_table}</div>" if stage_rows else "",
        "</div>",
    ]
    return "".join(parts)


def runs(history: Sequence[_data.RunFacts]) -> str:
    """One line per run, newest first: what a schedule of reprocessing runs did, run by run."""
    if not history:
        return none("the manifest has no rows")
    headers = ("run_id", "started (UTC)", "wall s", "rows", "processed", *_data.STATUSES, "items/s")
    rows = [(text(facts.run_id), text(f"{facts.started:%Y-%m-%d %H:%M:%S}" if facts.started else None),
             number(facts.wall_s, 1), number(sum(facts.counts.values())), number(facts.processed),
             *(number(facts.counts[status]) for status in _data.STATUSES),
             number(facts.processed / facts.wall_s if facts.wall_s else None))
            for facts in list(reversed(history))[:_MAX_TABLE_ROWS]]
    return table(headers, rows, ("", "", *["num"] * (len(headers) - 2)), len(history))


def figure_or_none(figure_html: str | None, what: str) -> str:
    return figure_html if figure_html else none(what)


def _listed(latest: pa.Table, column: str, value: str, columns: Sequence[str],
            order_by: str) -> tuple[list[tuple], int]:
    """The first :data:`_MAX_TABLE_ROWS` rows whose ``column`` is ``value`` (``columns`` only, as
    Python values, ordered by ``order_by``), and how many such rows there are in all.

    Only the rows shown become Python values: half a million errors cost an Arrow sort, not a list.
    """
    items = _data.where(latest.select(list(dict.fromkeys([*columns, column]))), column, value)
    shown = items.take(pc.sort_indices(items, [(order_by, "ascending")])[:_MAX_TABLE_ROWS])
    return list(zip(*(shown.column(name).to_pylist() for name in columns))), items.num_rows


def failures(latest: pa.Table) -> str:
    rows, total = _listed(latest, "status", "error", FAILURE_COLUMNS, "input_uri")
    if total == 0:
        return none("no item's latest outcome is an error")
    return table(FAILURE_COLUMNS, [tuple(text(value) for value in row) for row in rows],
                 ("uri", "", "", "msg"), total)


def metric_values(latest: pa.Table) -> dict[str, np.ndarray]:
    """Metrics with at least one value, among items that were measured."""
    measured = _data.where(latest.select(["status", *_data.METRIC_COLUMNS]), "status", "ok", "flagged")
    found = {name: _data.floats(measured, name) for name in _data.METRIC_COLUMNS}
    return {name: values for name, values in found.items() if values.size}


def flagged(latest: pa.Table) -> str:
    columns = ("input_uri", "flag_reasons", "lr_psnr", "sharpness", "delta_e", "model")
    listed, total = _listed(latest, "status", "flagged", columns, "lr_psnr")
    if total == 0:
        return none("no item is flagged")
    rows = [(text(uri), text(reasons), number(psnr, 2), significant(sharp), number(delta, 2), text(model))
            for uri, reasons, psnr, sharp, delta, model in listed]
    return table(columns, rows, ("uri", "msg", "num", "num", "num", ""), total)


def videos(latest: pa.Table, sample: int, thumb_px: int, crop_px: int) -> str:
    """The videos' table, then up to ``sample`` of them compared on one frame each."""
    columns = ("input_uri", "status", "frames_in", "frames_out", "fps", "duration_s", "segments", "codec")
    listed, total = _listed(latest, "kind", "video", columns, "input_uri")
    if total == 0:
        return ""
    rows = [(text(uri), text(status), number(fin), number(fout), number(fps, 2), number(dur, 2), number(seg),
             text(codec)) for uri, status, fin, fout, fps, dur, seg, codec in listed]
    body = table(columns, rows, ("uri", "", "num", "num", "num", "num", "num", ""), total)
    compared = "".join(video_comparison(row, thumb_px, crop_px)
                       for row in _data.comparison_sample(latest, sample, kind="video"))
    return section("videos", f"Videos ({total:,})", body + compared)


def _picture(picture: _images.Picture | None, caption: str, pixelated: bool = False,
             shown: tuple[int, int] | None = None) -> str:
    """An ``<img>`` (at ``shown`` CSS px if given, else its own size), or a placeholder and its note."""
    if picture is None:
        return ""
    if picture.uri is None:
        return (f'<figure><div class="placeholder">image unavailable</div><figcaption>{text(caption)}</figcaption>'
                f'<p class="note">{text(picture.note)}</p></figure>')
    width, height = shown or (picture.width, picture.height)
    style = ' class="px"' if pixelated else ""
    return (f'<figure><img{style} src="{picture.uri}" width="{width}" height="{height}" '
            f'alt="{text(caption)}"><figcaption>{text(caption)}</figcaption></figure>')


def _slider(comparison: _images.Comparison) -> str:
    before, after = comparison.before_crop, comparison.after_crop
    if before is None or after is None:
        return ""
    size = f'width="{after.width}" height="{after.height}"'
    return (f'<figure class="slider"><div class="stack" style="width:{after.width}px;height:{after.height}px">'
            f'<img class="after" src="{after.uri}" {size} alt="output">'
            f'<img class="before" src="{before.uri}" {size} alt="input, bicubic">'
            '<div class="divider"></div></div>'
            '<input type="range" min="0" max="100" value="50" aria-label="before/after split">'
            "<figcaption>slider: left input, right output</figcaption></figure>")


def comparison(row: dict, thumb_px: int, crop_px: int) -> str:
    """One sampled image: thumbnails, the 1:1 crops side by side, and the slider."""
    result = _images.compare(row.get("input_uri"), row.get("output_uri"), thumb_px, crop_px)
    facts = (("model", text(row.get("model"))), ("input", f"{row.get('width')}×{row.get('height')}"),
             ("output", f"{row.get('output_width')}×{row.get('output_height')}"),
             ("lr_psnr", number(row.get("lr_psnr"), 2)), ("sharpness", significant(row.get("sharpness"))),
             ("delta_e", number(row.get("delta_e"), 2)))
    return _item(row, result, facts, "input")


def video_comparison(row: dict, thumb_px: int, crop_px: int) -> str:
    """One sampled video, compared on its middle frame as :func:`comparison` compares an image."""
    result, shown_s = _images.compare_video(row.get("input_uri"), row.get("output_uri"), thumb_px, crop_px)
    facts = (("model", text(row.get("model"))), ("frames", number(row.get("frames_out"))),
             ("frame at", f"{number(shown_s, 3)} s"))
    return _item(row, result, facts, "input frame")


def _item(row: dict, result: _images.Comparison, facts: Sequence[tuple[str, str]], what: str) -> str:
    """The HTML of one compared item: its name, facts (already escaped), pictures and slider."""
    line = " · ".join(f"{name} {value}" for name, value in (("status", text(row.get("status"))), *facts))
    reasons = f'<p class="note">{text(row["flag_reasons"])}</p>' if row.get("flag_reasons") else ""
    # The input thumbnail is drawn as large as the output's, so the two compare at a glance.
    output_size = (result.output_thumb.width, result.output_thumb.height) if result.output_thumb.uri else None
    where = (f"crop {result.crop_box[2]}×{result.crop_box[3]} at ({result.crop_box[0]}, {result.crop_box[1]}), 1:1"
             if result.crop_box else "crop")
    return (
        f'<div class="item"><h3 class="status-{text(row.get("status"))}">{text(row.get("input_uri"))}</h3>'
        f'<div class="facts">{line}</div>{reasons}<div class="grid">'
        f"{_picture(result.input_thumb, what + ' (nearest)', True, output_size)}"
        f"{_picture(result.output_thumb, 'output')}"
        f"{_picture(result.before_crop, what + ', bicubic: ' + where, pixelated=True)}"
        f"{_picture(result.after_crop, 'output: ' + where, pixelated=True)}"
        f"{_slider(result)}</div></div>"
    )


def comparisons(latest: pa.Table, sample: int, thumb_px: int, crop_px: int) -> str:
    rows = _data.comparison_sample(latest, sample)
    if not rows:
        return none("no ok or flagged image with an output")
    return "".join(comparison(row, thumb_px, crop_px) for row in rows)

