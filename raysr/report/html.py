"""``raysr report``: one self-contained HTML file describing a job from its manifest.

The file needs no server and makes no network request: plotly.js is inlined
once, images are embedded as ``data:`` URIs (JPEG thumbnails, PNG 1:1 crops),
and every manifest string is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow.compute as pc

from raysr import __version__
from raysr.report import _data, _page, _sections

_THUMB_RANGE = (32, 2048)
_CROP_RANGE = (16, 1024)


def _check_inputs(sample: int, thumb_px: int, crop_px: int) -> None:
    if sample < 0:
        raise ValueError(f"sample must be >= 0 (items to compare), got {sample}")
    if not _THUMB_RANGE[0] <= thumb_px <= _THUMB_RANGE[1]:
        raise ValueError(f"thumb_px must be in {_THUMB_RANGE[0]}..{_THUMB_RANGE[1]} (thumbnail long side), "
                         f"got {thumb_px}")
    if not _CROP_RANGE[0] <= crop_px <= _CROP_RANGE[1]:
        raise ValueError(f"crop_px must be in {_CROP_RANGE[0]}..{_CROP_RANGE[1]} (1:1 crop side), got {crop_px}")


def _plotly():
    """plotly, or an error naming the extra that installs it."""
    try:
        import plotly.offline
        from raysr.report import _figures
    except ImportError as error:
        raise ImportError("raysr report needs plotly: pip install 'raysr[report]'") from error
    return plotly.offline, _figures


def _figure_sections(data: _data.ReportData, stats: dict, figures) -> list[str]:
    """Throughput, stage breakdown, load and metric histograms (a 'none' line when empty)."""
    starts, by_status, width_s = _data.throughput(data.run)
    by_node, by_actor = _data.load_by(data.run, "node_id"), _data.load_by(data.run, "actor_id")
    values = _sections.metric_values(data.latest)
    drawn = {
        "throughput": figures.to_div(figures.throughput(starts, by_status, width_s)) if by_status else None,
        "stages": figures.to_div(figures.stages(stats)) if stats else None,
        "load": figures.to_div(figures.load(by_node, by_actor)) if by_node or by_actor else None,
        "metrics": figures.to_div(figures.metrics(values, _data.thresholds(data.latest))) if values else None,
    }
    return [
        _sections.section("throughput", "Throughput over time (latest run)",
                          _sections.figure_or_none(drawn["throughput"], "no finished items")),
        _sections.section("stages", "Per-stage time (latest run)",
                          _sections.figure_or_none(drawn["stages"], "no stage timings")),
        _sections.section("load", "Per-node and per-actor load (latest run)",
                          _sections.figure_or_none(drawn["load"], "no item reached a worker")),
        _sections.section("metrics", "Metric distributions (latest outcome per item)",
                          _sections.figure_or_none(drawn["metrics"], "no metrics recorded")),
    ]


def render_report(manifest_uri: str, *, sample: int = 6, thumb_px: int = 256, crop_px: int = 128) -> str:
    """The report for the manifest at ``manifest_uri`` as one HTML string (see :func:`write_report`)."""
    _check_inputs(sample, thumb_px, crop_px)
    offline, figures = _plotly()
    data = _data.load(manifest_uri)
    stats = _data.stage_stats(data.run)
    body = [
        _sections.section("summary", "Summary", _sections.summary(data, stats)),
        _sections.section("runs", f"Runs ({data.runs:,}, newest first)", _sections.runs(data.history)),
        *_figure_sections(data, stats, figures),
        _sections.section("failures", "Failures", _sections.failures(data.latest)),
        _sections.section("flagged", "Flagged items", _sections.flagged(data.latest)),
        _sections.videos(data.latest, sample, thumb_px, crop_px),
        _sections.section("compare", "Before / after (sample)",
                          _sections.comparisons(data.latest, sample, thumb_px, crop_px)),
    ]
    nav = [("summary", "Summary"), ("runs", "Runs"), ("throughput", "Throughput"), ("stages", "Stages"), ("load", "Load"),
           ("metrics", "Metrics"), ("failures", "Failures"), ("flagged", "Flagged"), ("videos", "Videos"),
           ("compare", "Before/after")]
    has_videos = bool(pc.any(pc.equal(data.latest.column("kind"), "video")).as_py())
    nav = [(anchor, name) for anchor, name in nav if anchor != "videos" or has_videos]
    title = f"raysr report: {data.job_id or 'empty manifest'}"
    now = dt.datetime.now(dt.timezone.utc)
    subtitle = f"{manifest_uri} · generated {now:%Y-%m-%d %H:%M UTC} · raysr {__version__}"
    return _page.page(title, subtitle, nav, "\n".join(part for part in body if part), offline.get_plotlyjs())


def write_report(manifest_uri: str, out_path: str | Path, *, sample: int = 6, thumb_px: int = 256,
                 crop_px: int = 128) -> Path:
    """Write a self-contained HTML report of a job's manifest.

    Args:
        manifest_uri: the manifest folder, local or ``s3://`` (read with
            :func:`raysr.manifest.read_manifest`; an absent one gives an empty report).
        out_path: the HTML file to write (local); its folder is created.
        sample: ok/flagged images to show before/after (worst flagged first), >= 0; as many
            videos again, each on its middle frame.
        thumb_px: long side of embedded thumbnails, 32..2048.
        crop_px: side of the 1:1 before/after crops in output pixels, 16..1024.

    Returns:
        The written file's path.

    Raises:
        ValueError: for an argument out of range.
        ImportError: when plotly (the ``report`` extra) is not installed.

    Example:
        >>> write_report("out/_raysr/manifest", "report.html")  # doctest: +SKIP
        PosixPath('report.html')
    """
    document = render_report(manifest_uri, sample=sample, thumb_px=thumb_px, crop_px=crop_px)
    path = Path(out_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path
