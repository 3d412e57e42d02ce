"""PDF -> clean paragraphs per page: running headers/footers, page and line numbers, vertical margin text
and page-foot footnotes removed; hyphenated line breaks re-joined.

Works on PyMuPDF's block structure (one block is usually one paragraph or one marker such as "1." or
"(a)"), which keeps paragraph boundaries that a plain ``get_text()`` dump loses.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

# Page furniture that is never law text wherever it sits in the top/bottom margin.
_PAGE_NO = re.compile(r"^(?:page\s*\d+\s*(?:of\s*\d+)?|-\s*\d+\s*-|\d+\s*/\s*\d+|\d{1,4})$", re.I)
# Structural markers must survive even when they repeat at the top of many pages.
_MARKER = re.compile(r"^(?:\(#\)|#\.|\([a-z]+\)|article #|annex [ivxlc]+|chapter [ivxlc]+)$", re.I)
_MARGIN = 0.14  # top/bottom share of the page height where running headers and footers live
_REPEAT = 0.5  # a margin line repeated on at least this share of pages is furniture


OCR_MODES = ("auto", "always", "never")  # auto: OCR only image-only pages, when Tesseract is installed
OCR_DPI = 200  # ~1 s a Letter page with Tesseract on one core; 300 dpi was 2x slower for no better text


class NoTextLayer(Exception):
    """The PDF has pages but no extractable text (scanned/image-only)."""


@dataclass
class PdfText:
    pages: list[tuple[int, list[str]]]  # (1-based page number, [paragraph, ...]) with furniture removed
    title: str  # PDF metadata title ("" when absent)
    head: str  # raw text of the first pages, furniture included (bill numbers often sit in the header)
    image_only: list[int]  # pages with no text layer that were not OCR'd
    ocr_pages: list[int]  # pages whose text came from OCR


def tessdata() -> str | None:
    """Tesseract's language data folder, or None when Tesseract is not installed."""
    import shutil

    import pymupdf

    if not shutil.which("tesseract"):
        return None
    try:
        return pymupdf.get_tessdata()
    except RuntimeError:
        return None


@dataclass
class Line:
    y0: float
    y1: float
    x0: float
    size: float
    text: str


def _key(text: str) -> str:
    return re.sub(r"\d+", "#", text.strip().lower())


def _page_lines(page, flags: int, textpage=None) -> tuple[float, list[list[Line]]]:
    """Blocks of horizontal, non-empty lines; vertical text (margin banners) is dropped."""
    blocks: list[list[Line]] = []
    for b in page.get_text("dict", flags=flags, textpage=textpage)["blocks"]:
        lines = []
        for ln in b.get("lines", []):
            dx, dy = ln["dir"]
            text = "".join(s["text"] for s in ln["spans"]).replace("\u00a0", " ").strip()
            if abs(dy) > 0.01 or not text:
                continue
            size = max(s["size"] for s in ln["spans"])
            lines.append(Line(ln["bbox"][1], ln["bbox"][3], ln["bbox"][0], size, text))
        if lines:
            blocks.append(lines)
    return page.rect.height, blocks


# "two- or three-wheel vehicles", "pre- and post-contractual": the hyphen waits for the word after the conjunction.
_SUSPENDED = frozenset({"or", "and", "nor", "to"})


def _join(lines: list[str], words: set[str]) -> str:
    """Join the lines of one paragraph, re-joining words hyphenated at a line break.

    "estab-" + "lishment" becomes "establishment" only when the document uses that word elsewhere;
    otherwise the hyphen is real and the compound is joined without a space ("internet-" + "based" is
    "internet-based"), except before a conjunction: a suspended hyphen ("two-" + "or three-wheel") keeps it."""
    out = ""
    for text in lines:
        head = re.search(r"([A-Za-z]+)-$", out)
        tail = re.match(r"[a-z]+", text)
        if head and tail and (head.group(1) + tail.group(0)).lower() in words:
            out = out[:-1] + text
        elif head and tail and tail.group(0) not in _SUSPENDED:
            out += text
        else:
            out = f"{out} {text}" if out else text
    return re.sub(r"\s+", " ", out).strip()


def pdf_paragraphs(path: str) -> list[tuple[int, list[str]]]:
    """``[(page_number, [paragraph, ...]), ...]`` with page furniture removed. Page numbers are 1-based."""
    return read_pdf(path).pages


def read_pdf(path: str, ocr: str = "never", head_pages: int = 4) -> PdfText:
    """Paragraphs per page plus what identification needs. Image-only pages are OCR'd (``ocr`` auto/always,
    Tesseract installed) or listed in ``image_only``; a document with no text at all raises NoTextLayer."""
    import pymupdf

    if ocr not in OCR_MODES:
        raise ValueError(f"ocr must be one of {', '.join(OCR_MODES)}, not {ocr!r}")
    with pymupdf.open(path) as doc:
        if doc.needs_pass:
            raise PermissionError("encrypted (password required)")
        if doc.page_count == 0:
            raise ValueError("no pages")
        # Images are never needed (image-only pages are detected by having no text); decoding them
        # was 90% of the time on the browser-printed CA bill.
        flags = pymupdf.TEXTFLAGS_DICT & ~pymupdf.TEXT_PRESERVE_IMAGES
        tess = tessdata() if ocr != "never" else None
        pages, image_only, ocr_pages = [], [], []
        for no, page in enumerate(doc, start=1):
            height, blocks = _page_lines(page, flags)
            if tess and (ocr == "always" or (not blocks and page.get_images())):
                tp = page.get_textpage_ocr(flags=flags, dpi=OCR_DPI, full=True, tessdata=tess)
                height, blocks = _page_lines(page, flags, textpage=tp)
                ocr_pages.append(no)
            elif not blocks and page.get_images():
                image_only.append(no)
            pages.append((height, blocks))
        title = (doc.metadata or {}).get("title") or ""
    if not any(blocks for _, blocks in pages):
        hint = "install tesseract-ocr and use --ocr auto" if not tess else "OCR found no text"
        raise NoTextLayer(f"no text layer (image-only or scanned PDF; {hint})")
    head = "\n".join(ln.text for _, blocks in pages[:head_pages] for b in blocks for ln in b)
    return PdfText(_clean(pages), title, head, image_only, ocr_pages)


def _clean(pages: list[tuple[float, list[list[Line]]]]) -> list[tuple[int, list[str]]]:
    """Running headers/footers, page numbers and page-foot footnotes removed; lines joined to paragraphs."""
    sizes: Counter[float] = Counter()
    margin_keys: Counter[str] = Counter()
    for height, blocks in pages:
        seen = set()
        for line in (ln for b in blocks for ln in b):
            sizes[round(line.size, 1)] += len(line.text)
            if line.y0 < height * _MARGIN or line.y1 > height * (1 - _MARGIN):
                seen.add(_key(line.text))
        margin_keys.update(seen)
    body = sizes.most_common(1)[0][0]
    words = {w.lower() for _, blocks in pages for b in blocks for ln in b for w in re.findall(r"[A-Za-z]+", ln.text)}
    need = max(2, _REPEAT * len(pages)) if len(pages) > 1 else float("inf")
    furniture = {k for k, n in margin_keys.items() if n >= need and not _MARKER.match(k)}

    out = []
    for pageno, (height, blocks) in enumerate(pages, start=1):
        paras: list[str] = []
        in_footnotes = False
        for block in blocks:
            kept = []
            for line in block:
                in_margin = line.y0 < height * _MARGIN or line.y1 > height * (1 - _MARGIN)
                if _PAGE_NO.match(line.text) or (in_margin and _key(line.text) in furniture):
                    continue
                # Page-foot footnotes (EU OJ): smaller type, low on the page, starting "(1) ...".
                small_low = line.size < body * 0.92 and line.y0 > height * 0.6
                if small_low and (in_footnotes or re.match(r"^\(\d+\)\s", line.text)):
                    in_footnotes = True
                    continue
                kept.append(line.text)
            if kept:
                paras.append(_join(kept, words))
        out.append((pageno, _merge_markers(paras)))
    return out


def _merge_markers(paras: list[str]) -> list[str]:
    """A block holding only "1." or "(a)" belongs to the paragraph that follows it."""
    out: list[str] = []
    pending = ""
    for p in paras:
        if re.fullmatch(r"\(?[0-9a-z]{1,5}[.)]", p):
            pending = f"{pending} {p}".strip()
            continue
        out.append(f"{pending} {p}".strip() if pending else p)
        pending = ""
    if pending:
        out.append(pending)
    return out
