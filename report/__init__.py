"""`fedpop report DIR`: one self-contained report.html for any run directory (see report/html.py)."""
from report.html import MAX_ROWS, ReportError, render, write_report

__all__ = ["MAX_ROWS", "ReportError", "render", "write_report"]
