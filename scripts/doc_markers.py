"""Rewrite the generated part of a document: the text between two marker lines."""

from __future__ import annotations

from pathlib import Path


def replace_between(doc: Path, begin: str, end: str, text: str) -> None:
    """Replace what lies between ``begin`` and ``end`` in ``doc`` with ``text``
    (ValueError naming the markers if one is missing)."""
    body = doc.read_text()
    if begin not in body or end not in body:
        raise ValueError(f"{doc}: the markers {begin!r} and {end!r} are missing")
    head, rest = body.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n\n{text.strip()}\n\n{end}{tail}")
