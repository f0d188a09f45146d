"""MkDocs hook: the site's changelog page is the repository's CHANGELOG.md.

``docs/changelog.md`` holds only the marker ``<!-- changelog -->``; the hook puts CHANGELOG.md
in its place and turns its repository-relative links (``docs/x.md``) into links within the site.
"""
from __future__ import annotations

from pathlib import Path

MARKER = "<!-- changelog -->"


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 - MkDocs hook signature
    if MARKER not in markdown:
        return markdown
    text = (Path(config["config_file_path"]).parent / "CHANGELOG.md").read_text(encoding="utf-8")
    return markdown.replace(MARKER, text.replace("](docs/", "]("))
