"""The table `python -m bench.scale` prints, and the `scale` key of bench.json it writes."""

from __future__ import annotations

from typing import Any

TARGETS = {"enqueue_p50_ratio_100k": 1.5, "slot_refill_p50_ms": 50.0}
REFILL_DEFINITION = (
    "refill = started_at of the k-th start after the first MAX_ACTIVE_JOBS minus finished_at of "
    "the (k - MAX_ACTIVE_JOBS)-th completion (job rows, sorted; bench/scale_refill.py)"
)


def figures(measured: dict[str, Any]) -> dict[str, Any]:
    """The `scale` key of bench.json: issue 18's keys first, then the rest by backlog."""
    levels = measured["backlogs"]
    deepest = max(levels, key=int)
    empty = levels["0"]["enqueue"]["p50_ms"] if "enqueue" in levels.get("0", {}) else None
    deep = levels[deepest].get("enqueue", {}).get("p50_ms")
    refills = measured["slot_refill"]
    refill = refills[max(refills, key=int)]  # issue 18's setting: the most slots
    return {
        "enqueue_p50_ratio_100k": round(deep / empty, 2) if empty and deep else None,
        "sweep_ms_by_backlog": {b: level["sweep"]["ms_p50"] for b, level in levels.items()},
        "slot_refill_p50_ms": refill["refill_p50_ms"],
        "sweep_billed_commands_by_backlog": {
            b: level["sweep"]["billed_p50"] for b, level in levels.items()
        },
        "sweep_postgrest_round_trips_by_backlog": {
            b: sum(level["sweep"]["runs"][0]["postgrest"].values()) for b, level in levels.items()
        },
        "sweep_billed_by_script_by_backlog": {
            b: {name: c["billed"] for name, c in level["sweep"]["by_script"].items()}
            for b, level in levels.items()
        },
        "dispatch_snapshot_sql_ms_by_backlog": {
            b: level["dispatch_snapshot_sql_ms"] for b, level in levels.items()
        },
        "get_job_p50_ms_by_backlog": {
            b: level["lookup"]["get_job_p50_ms"] for b, level in levels.items()
        },
        "position_p50_ms_by_backlog": {
            b: level["lookup"]["position_p50_ms"] for b, level in levels.items()
        },
        "enqueue_p50_ms": {"empty": empty, deepest: deep},
        "slot_refill": {
            cap: {key: found[key] for key in REFILL_KEYS} for cap, found in refills.items()
        },
        "slot_refill_definition": REFILL_DEFINITION,
        "targets": TARGETS,
    }


REFILL_KEYS = (
    "processes",
    "max_active_jobs",
    "generation_delay_seconds",
    "peak_running",
    "cap_reached",
    "completed_per_second",
    "refills",
    "refill_p50_ms",
    "refill_p90_ms",
)


def render(scale: dict[str, Any]) -> str:
    backlogs = list(scale["sweep_ms_by_backlog"])
    width = max(len(f"{int(b):,}") for b in backlogs) + 2
    head = "".join(f"{int(b):>{width},}" for b in backlogs)

    def row(name: str, values: dict[str, Any]) -> str:
        cells = "".join(
            f"{'n/a' if values.get(b) is None else values[b]:>{width}}" for b in backlogs
        )
        return f"{name:<38}{cells}"

    scripts = scale["sweep_billed_by_script_by_backlog"]
    names = sorted({name for found in scripts.values() for name in found})

    lines = [
        f"{'waiting jobs':<38}{head}",
        row("sweep ms (median)", scale["sweep_ms_by_backlog"]),
        row("sweep billed Redis commands", scale["sweep_billed_commands_by_backlog"]),
        row("sweep PostgREST round trips", scale["sweep_postgrest_round_trips_by_backlog"]),
        *(
            row(f"  of which {name}", {b: found.get(name, 0) for b, found in scripts.items()})
            for name in names
        ),
        row("dispatch_snapshot() in SQL, ms", scale["dispatch_snapshot_sql_ms_by_backlog"]),
        row("GET /api/job/{id} p50 ms", scale["get_job_p50_ms_by_backlog"]),
        row("Dispatcher.position p50 ms", scale["position_p50_ms_by_backlog"]),
        "",
        f"POST /api/generate p50: empty {scale['enqueue_p50_ms']['empty']} ms, "
        + ", ".join(
            f"{int(b):,} {v} ms" for b, v in scale["enqueue_p50_ms"].items() if b != "empty"
        )
        + f"; ratio {scale['enqueue_p50_ratio_100k']}"
        + f" (target <= {TARGETS['enqueue_p50_ratio_100k']})",
        *(_refill_line(refill) for refill in scale["slot_refill"].values()),
        REFILL_DEFINITION,
    ]
    return "\n".join(lines)


def _refill_line(refill: dict[str, Any]) -> str:
    return (
        f"slot refill at MAX_ACTIVE_JOBS {refill['max_active_jobs']} "
        f"({refill['processes']} worker processes, {refill['generation_delay_seconds']:g} s "
        f"generations): p50 {refill['refill_p50_ms']} ms, p90 {refill['refill_p90_ms']} ms "
        f"(target <= {TARGETS['slot_refill_p50_ms']:g} ms); peak {refill['peak_running']} running"
        f" ({'cap reached' if refill['cap_reached'] else 'CAP NOT REACHED'}), "
        f"{refill['completed_per_second']} completed/s, {refill['refills']} refills"
    )
