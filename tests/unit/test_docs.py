"""The README and docs/: every relative link reaches a file, and every anchor a heading of
it; the README's first screen gives the two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slugs(path: Path) -> set[str]:
    """Heading anchors as GitHub makes them: lowercased, punctuation dropped, spaces to -."""
    out = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = re.match(r"^#{1,6} (.*)$", line)
        if match and not in_code:
            out.add(re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-"))
    return out


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # not inside code blocks
    return [m.group(1) for m in LINK.finditer(text) if not m.group(1).startswith("http")]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_link_and_anchor_resolves(doc: Path) -> None:
    found = links(doc)
    for target in found:
        file, _, anchor = target.partition("#")
        destination = (doc.parent / file).resolve() if file else doc
        assert destination.exists(), f"{doc.name}: {target} names no file"
        if anchor:
            assert anchor in slugs(destination), f"{doc.name}: {target} names no heading"


def test_the_docs_are_linked_from_the_readme_and_it_starts_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "make run" in first_screen and "make test" in first_screen
    for doc in DOCS[1:]:
        assert f"docs/{doc.name}" in readme, f"{doc.name} is not linked from the README"
    assert len(readme.splitlines()) <= 130  # about two screens
