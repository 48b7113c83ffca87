"""The code examples of docs/clients.md, each found by the comment that names it."""

from __future__ import annotations

import re
from pathlib import Path

CLIENTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "clients.md"
_EXAMPLE = re.compile(r"<!-- example: ([\w-]+)[^>]*-->\s*```(\w+)\n(.*?)```", re.DOTALL)


def examples() -> dict[str, tuple[str, str]]:
    """name -> (language, code) for every example the page marks."""
    text = CLIENTS_DOC.read_text()
    return {name: (language, code) for name, language, code in _EXAMPLE.findall(text)}
