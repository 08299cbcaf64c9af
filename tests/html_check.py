"""Reading a report's HTML the way a browser's parser would, without a browser: the standard library's
html.parser collects the elements, their text and the images' sources."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.images: list[str] = []
        self.cells: list[str] = []  # text of every <td>/<th>
        self.headings: list[str] = []
        self.text: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._open.append(tag)
        if tag == "img":
            self.images.append(dict(attrs).get("src", ""))
            self._open.pop()  # void element

    def handle_endtag(self, tag):
        if tag in self._open:
            while self._open and self._open.pop() != tag:
                pass

    def handle_data(self, data):
        self.text.append(data)
        if not self._open:
            return
        if self._open[-1] in ("td", "th") or (len(self._open) > 1 and self._open[-2] in ("td", "th")):
            self.cells.append(data.strip())
        if self._open[-1] in ("h1", "h2", "h3"):
            self.headings.append(data.strip())


def read(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text())
    page.close()
    return page


def assert_real_html(path: Path, table: bool = True) -> Page:
    """A report rendered as HTML: tables are <table>s, no Markdown syntax or <pre> block left, images inline."""
    page = read(path)
    assert "h1" in page.tags, page.tags[:40]
    if table:
        assert "table" in page.tags and "td" in page.tags, page.tags[:40]
    assert "pre" not in page.tags
    text = "".join(page.text)
    assert "|---" not in text and "**" not in text and "\n# " not in text
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    return page
