"""Compatibility path: `storyq_local.stack.tokens` owns this now. Kept only while files outside the
stack's owners still import from here; import from `storyq_local.stack.tokens` instead."""

from storyq_local.stack.tokens import (
    access_token_claims,
    parse_duration,
    sign,
)

__all__ = [
    "access_token_claims",
    "parse_duration",
    "sign",
]
