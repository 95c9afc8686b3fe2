"""Run inside a fresh interpreter: import a handler from `sam build` output only, invoke it.

Usage: python invoke_built.py FUNCTION_DIR LAYER_DIR MODULE:FUNCTION EVENT_JSON
Prints {"result": ..., "storyq_from": path} as JSON on the last line.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass


@dataclass
class Context:
    function_name: str = "storyq-built"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:storyq-built"
    aws_request_id: str = "c0ffee00-0000-4000-8000-000000000001"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def main() -> None:
    function_dir, layer_dir, target, event_text = sys.argv[1:5]
    # Only the build's own folders, ahead of anything the interpreter may have.
    sys.path[:0] = [function_dir, layer_dir]
    module_name, _, attribute = target.partition(":")
    handler = getattr(importlib.import_module(module_name), attribute)
    result = handler(json.loads(event_text), Context())
    storyq = importlib.import_module("storyq")
    print(json.dumps({"result": result, "storyq_from": storyq.__file__}, default=str))


if __name__ == "__main__":
    main()
