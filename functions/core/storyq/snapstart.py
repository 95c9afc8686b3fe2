"""Lambda SnapStart: what must not be frozen into the snapshot, and what a restored copy redoes.

With SnapStart (template parameter SnapStart=on) Lambda runs a function's init once, when a
version is published, snapshots the memory, and starts every new execution environment from
that snapshot. Whatever init read would be shared by every copy and outlive rotations: the
settings and the secrets read from SSM, clients and their connections, the random generator's
state. So before the snapshot they are forgotten, and after each restore they are made anew:
settings and secrets re-read, clients new, `random` reseeded (the retry jitter draws from it).

The hooks come from `snapshot_restore_py`, which the Lambda Python runtime provides (3.12+);
where it is missing (local runs) there is nothing to register.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from storyq.config import get_settings


def forget_settings() -> None:
    """Drop the cached settings and the SSM parameters Powertools cached with them."""
    get_settings.cache_clear()
    from aws_lambda_powertools.utilities import parameters  # boto3 is only needed in AWS

    parameters.clear_caches()  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated


def register(*, before_snapshot: Callable[[], object], after_restore: Callable[[], object]) -> bool:
    """Register a function's own hooks, wrapped in what every function needs: before the
    snapshot `forget_settings` then `before_snapshot`; after a restore a reseeded `random`,
    then `after_restore`. False when the runtime has no hooks (not Lambda)."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False

    def forget() -> None:
        before_snapshot()
        forget_settings()

    def restore() -> None:
        random.seed()
        after_restore()

    register_before_snapshot(forget)
    register_after_restore(restore)
    return True
