"""A job's manifest as one self-contained HTML report (``raysr report``; needs the ``report`` extra)."""

from raysr.report.html import render_report, write_report

__all__ = ["render_report", "write_report"]
