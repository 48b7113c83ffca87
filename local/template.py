"""Reading template.yaml, and the one account the local stack plays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

ACCOUNT_ID = "123456789012"


def load_template(path: Path) -> dict[str, Any]:
    """Parses a SAM template, turning short-form tags (``!Ref X``) into ``{"Ref": "X"}``."""
    template: dict[str, Any] = yaml_parse(path.read_text())
    return template
