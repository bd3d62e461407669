"""Reading the docs' Markdown for the coverage tests: sections, table rows, and the exact tokens in a cell.

A coverage test must find a name where it is documented, not anywhere on the page: ``name`` and
``kind`` are common words, and ``--json`` is a prefix of ``--json-lines``.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"`([^`]+)`")


def section(text: str, heading: str) -> str:
    """The text under the heading line ``heading`` (e.g. ``"### Attributes"``), up to the next
    heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1  # ValueError when the heading is missing: the test fails
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def rows(text: str) -> list[list[str]]:
    """The cells of every table body row (header and ``---`` rows left out)."""
    found: list[list[str]] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if not line.startswith("|") or set(line) <= set("|- "):
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if following.startswith("| ---") or following.startswith("|---"):
            continue  # a header row
        found.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return found


def tokens(cell: str) -> set[str]:
    """The backticked tokens of a cell or page, each whole: ``"`--requests N`, `--json`"`` gives
    ``{"--requests N", "--json"}``."""
    found: set[str] = set()
    for line in cell.splitlines():  # paired within a line; a fence line (```) pairs with nothing
        if not line.lstrip().startswith("```"):
            found.update(_TOKEN.findall(line))
    return found


def first_words(cell: str) -> set[str]:
    """Each backticked token's first word, with an ``=value`` dropped: ``--requests``, ``OTEL_X``."""
    return {token.split()[0].split("=")[0] for token in tokens(cell) if token.split()}
