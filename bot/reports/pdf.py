"""A framework report as PDF: the HTML report (`html.py`) laid out by xhtml2pdf, the optional
`pdf` extra. xhtml2pdf installs from wheels alone (reportlab, svglib, pillow: no Pango or Cairo
as WeasyPrint needs), and draws the charts as vectors from their SVG."""

from __future__ import annotations

import io
import logging
from typing import Any

from bot.reports.html import to_html
from bot.reports.model import FrameworkReport
from rules.errors import CompliancebotError

INSTALL_HINT = "PDF reports need the pdf extra: pip install 'compliancebot[pdf]'"
# Our page has no URL but data: images; whatever else it might name is fetched from nowhere.
MAX_IMAGE_PIXELS = 4_000_000
MAX_RENDER_SECONDS = 300


class PdfUnavailableError(CompliancebotError):
    """xhtml2pdf is not installed: the message says how to install it."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


class PdfError(CompliancebotError):
    """The renderer failed on the report (a bug of ours or of the renderer)."""


def _renderer() -> tuple[Any, Any]:
    """xhtml2pdf's entry point and its resource policy, or PdfUnavailableError."""
    try:
        from xhtml2pdf import pisa
        from xhtml2pdf.config.resources import ResourceAccessPolicy
    except ImportError:
        raise PdfUnavailableError from None
    return pisa, ResourceAccessPolicy


def require() -> None:
    """Raise PdfUnavailableError now, before any work, when PDF cannot be made."""
    _renderer()


def to_pdf(report: FrameworkReport) -> bytes:
    """The report as a PDF document (the same page as the HTML report, with its charts)."""
    pisa, policy = _renderer()
    # It warns about every CSS property it skips (flex, gap...): print CSS covers those.
    logging.getLogger("xhtml2pdf").setLevel(logging.ERROR)
    out = io.BytesIO()
    result = pisa.CreatePDF(
        to_html(report, for_pdf=True),
        dest=out,
        encoding="utf-8",
        resource_policy=policy(
            allow_remote=False,
            base_dir=None,  # no local file either
            max_image_pixels=MAX_IMAGE_PIXELS,
            max_render_seconds=MAX_RENDER_SECONDS,
        ),
    )
    if result.err:
        raise PdfError(f"the PDF renderer failed on the {report.name} report ({result.err} errors)")
    return out.getvalue()
