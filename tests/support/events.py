"""The sample events of events/ (what `sam local invoke -e` takes), with real tokens and ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE_JOB_ID = "6f1c2a3e-9d4b-4c8e-a2f1-0b7e5d3c9a41"
SAMPLE_STORY_ID = "0b7e5d3c-9a41-4c8e-a2f1-6f1c2a3e9d4b"


def load_event(name: str, *, token: str | None = None, **ids: str) -> dict[str, Any]:
    """events/<name>.json with the token and the sample ids replaced (`job_id`, `story_id`)."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    if token is not None:
        event["headers"]["authorization"] = f"Bearer {token}"
    replacements = {SAMPLE_JOB_ID: ids.get("job_id"), SAMPLE_STORY_ID: ids.get("story_id")}
    text = json.dumps(event)
    for sample, real in replacements.items():
        if real:
            text = text.replace(sample, real)
    replaced: dict[str, Any] = json.loads(text)
    return replaced
