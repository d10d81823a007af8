"""One HTML template for every report, the blocks it draws, and the vendored model viewer.

A page is a title, a few facts (label, value) and sections of blocks. Blocks are plain
dicts built by the functions below (``viewer``, ``video``, ``image``, ``table``, ``bullets``,
``pre``, ``links``); ``templates/report.html.j2`` draws each kind. Paths in blocks are
relative to the page, so a folder can be moved, opened from disk or served as it is.
"""

from __future__ import annotations

import base64
import filecmp
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ssd3d.pipeline.run_dir import REPORT_FILE

# Google's <model-viewer>, vendored by scripts/vendor_model_viewer.sh: the classic-script
# build, since Chromium blocks module scripts on file:// pages.
MODEL_VIEWER_JS = "model-viewer-umd.min.js"


@dataclass(frozen=True)
class Cell:
    """A table cell: text, or an image (``src`` relative to the page) with the text below."""

    text: str = ""
    bold: bool = False  # the best value of its column
    italic: bool = False  # a reference row, not an estimator
    src: str | None = None
    href: str | None = None  # where the image links to (default: the image itself)


@dataclass(frozen=True)
class Table:
    """A titled table of cells: markdown for table.md and the README, HTML on a page."""

    title: str
    head: list[str]
    rows: list[list[Cell]] = field(default_factory=list)

    def markdown_lines(self, heading: str) -> list[str]:
        def text(c: Cell) -> str:
            return f"**{c.text}**" if c.bold else f"*{c.text}*" if c.italic else c.text

        lines = [f"{heading} {self.title}", "", "| " + " | ".join(self.head) + " |"]
        lines.append("|" + "|".join(["---"] + [":-:"] * (len(self.head) - 1)) + "|")
        return lines + ["| " + " | ".join(text(c) for c in row) + " |" for row in self.rows]


# --- blocks ----------------------------------------------------------------------------------


def viewer(glb: Path, alt: str) -> dict:
    """An orbitable <model-viewer> of a .glb, inlined: Chromium's fetch() refuses file://."""
    data = base64.b64encode(Path(glb).read_bytes()).decode()
    return {"kind": "viewer", "src": f"data:model/gltf-binary;base64,{data}", "alt": alt}


def video(src: str, caption: str = "") -> dict:
    return {"kind": "video", "src": src, "caption": caption}


def image(src: str, alt: str, caption: str = "") -> dict:
    return {"kind": "image", "src": src, "alt": alt, "caption": caption}


def table(t: Table, gallery: bool = False) -> dict:
    return {"kind": "table", "table": t, "gallery": gallery}


def bullets(items: list[str]) -> dict:
    return {"kind": "bullets", "items": items}


def pre(text: str, summary: str) -> dict:
    """Preformatted text, folded under ``summary``."""
    return {"kind": "pre", "text": text, "summary": summary}


def links(out_dir: Path, names: list[str]) -> dict:
    """Links to the files of ``names`` that exist in ``out_dir``."""
    return {"kind": "links", "names": [n for n in names if (Path(out_dir) / n).is_file()]}


def section(title: str, *blocks: dict, side_by_side: bool = False) -> dict:
    return {"title": title, "blocks": list(blocks), "side_by_side": side_by_side}


# --- the page --------------------------------------------------------------------------------


def model_viewer_version() -> str:
    return (resources.files("ssd3d.report") / "assets" / "model-viewer.VERSION").read_text().strip()


def copy_model_viewer(out_dir: Path) -> str:
    """Put the viewer's script beside the page (once: 1 MB); returns its relative path."""
    target = Path(out_dir) / MODEL_VIEWER_JS
    source = resources.files("ssd3d.report") / "assets" / MODEL_VIEWER_JS
    with resources.as_file(source) as path:
        if not target.is_file() or not filecmp.cmp(path, target, shallow=False):
            shutil.copyfile(path, target)
    return MODEL_VIEWER_JS


def render_page(
    out_dir: Path,
    *,
    title: str,
    subtitle: str,
    facts: list[tuple[str, str]],
    sections: list[dict],
) -> Path:
    """Write ``out_dir/report.html``; copies the viewer's script if a block needs it."""
    import jinja2

    from ssd3d.atomic import atomic_write_bytes

    out_dir = Path(out_dir)
    kinds = {b["kind"] for s in sections for b in s["blocks"]}
    scripts = [copy_model_viewer(out_dir)] if "viewer" in kinds else []
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ssd3d.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        title=title,
        subtitle=subtitle,
        facts=facts,
        sections=sections,
        scripts=scripts,
        model_viewer_version=model_viewer_version() if scripts else "",
    )
    return atomic_write_bytes(out_dir / REPORT_FILE, html.encode())


__all__ = [
    "MODEL_VIEWER_JS",
    "REPORT_FILE",
    "Cell",
    "Table",
    "bullets",
    "image",
    "links",
    "pre",
    "render_page",
    "section",
    "table",
    "video",
    "viewer",
]
