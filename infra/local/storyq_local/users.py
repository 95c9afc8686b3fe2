"""Compatibility path: `storyq_local.stack.users` owns this now. Kept only while files outside the
stack's owners still import from here; import from `storyq_local.stack.users` instead."""

from storyq_local.stack.users import (
    dev_token,
    ensure_user,
    issuer,
)

__all__ = [
    "dev_token",
    "ensure_user",
    "issuer",
]
