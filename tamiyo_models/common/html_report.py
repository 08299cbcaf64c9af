"""Markdown reports as standalone HTML pages: real tables and headings (the `markdown` library with its
`tables` extension), every local PNG the Markdown links embedded as base64, so one file opens anywhere (an
MLflow artifact, a Dagster materialisation, an e-mail) with its plots."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:0.5em 0 1em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
    "th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}img{max-width:100%}"
)
_IMAGE = re.compile(r"(!\[[^\]]*\]\()([^)\s]+\.png)(\))")


def markdown_page(markdown_text: str, title: str, base_dir: str | Path | None = None) -> str:
    """One HTML document. Images `![caption](name.png)` whose file exists under `base_dir` are embedded."""
    import markdown

    if base_dir is not None:
        base = Path(base_dir)

        def embed(match: re.Match) -> str:
            path = base / match.group(2)
            if not path.is_file():
                return match.group(0)
            data = base64.b64encode(path.read_bytes()).decode()
            return f"{match.group(1)}data:image/png;base64,{data}{match.group(3)}"

        markdown_text = _IMAGE.sub(embed, markdown_text)
    body = markdown.markdown(markdown_text, extensions=["tables"], output_format="html")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )
