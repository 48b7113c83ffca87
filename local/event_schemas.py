"""The events' JSON Schemas, generated from ``avatar_core.models.events`` into
``docs/events/<type>.json`` (``make schemas``); ``tests/unit/test_events.py`` fails when the
checked-in copies drift from what the models generate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "docs" / "events"


def generated() -> dict[str, dict[str, Any]]:
    sys.path.insert(0, str(ROOT / "layers" / "core"))
    from avatar_core.models.events import EVENT_TYPES, event_schema

    return {event_type: event_schema(event_type) for event_type in EVENT_TYPES}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    schemas = generated()
    for stale in FOLDER.glob("*.json"):
        if stale.stem not in schemas:
            stale.unlink()
    for event_type, schema in schemas.items():
        (FOLDER / f"{event_type}.json").write_text(render(schema))
    print(f"{len(schemas)} event schemas in {FOLDER.relative_to(ROOT)}/")


if __name__ == "__main__":
    main()
