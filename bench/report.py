"""The one table `python -m bench` prints: each measured value, its target, met or missed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.cold_start import TARGETS_MS


@dataclass(frozen=True)
class Row:
    section: str
    name: str
    value: str
    target: str = ""
    met: bool | None = None  # None: informational, no target

    @property
    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "MISSED")

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "name": self.name,
            "value": self.value,
            "target": self.target,
            "verdict": self.verdict,
        }


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _check(value: float | None, ok: Callable[[float], bool]) -> bool | None:
    return None if value is None else ok(value)


def build_rows(results: dict[str, Any]) -> list[Row]:
    """The table; a benchmark that failed (or never ran) is one MISSED row naming its error."""
    sections: list[tuple[str, tuple[str, ...], Callable[..., list[Row]]]] = [
        ("enqueue", ("enqueue",), _enqueue_rows),
        ("status lookup", ("status_lookup",), _lookup_rows),
        ("cost per job", ("job_life", "redis_cost"), _cost_rows),
        ("worker", ("worker_overhead", "slot_refill"), _worker_rows),
        ("cold start", ("cold_start",), _cold_rows),
    ]
    rows: list[Row] = []
    for section, keys, make in sections:
        parts = [results.get(key) for key in keys]
        broken = [
            f"{key}: {part['error'] if part else results.get('stack_error', 'did not run')}"
            for key, part in zip(keys, parts, strict=True)
            if not part or "error" in part
        ]
        if broken:
            rows += [Row(section, "failed", _short(why), "", False) for why in broken]
        else:
            rows += make(*parts)
    return rows


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _enqueue_rows(enqueue: dict[str, Any]) -> list[Row]:
    rows = []
    for clients, level in enqueue.items():
        section = f"enqueue, {clients} client{'s' if clients != '1' else ''}"
        for label, key in (
            ("GET /api/me (baseline)", "baseline_get_me"),
            ("POST /api/generate", "post_generate"),
        ):
            s = level[key]
            rows.append(
                Row(
                    section,
                    f"{label} p50 / p95 / p99",
                    f"{_ms(s['p50_ms'])} / {_ms(s['p95_ms'])} / {_ms(s['p99_ms'])}",
                )
            )
            errors_target = "0 errors" if clients == "200" else ""
            rows.append(
                Row(
                    section,
                    f"{label} throughput, errors",
                    f"{s['throughput_rps']:.1f} req/s, {s['errors']} errors of {s['requests']}"
                    + (f", {s['degraded']} without position" if s["degraded"] else ""),
                    errors_target,
                    (s["errors"] == 0) if clients == "200" else None,
                )
            )
        ratio = level["p50_ratio"]
        rows.append(
            Row(
                section,
                "p50 ratio generate / baseline",
                "n/a" if ratio is None else f"{ratio:.2f}x",
                "<= 3x" if clients == "1" else "",
                _check(ratio, lambda r: r <= 3.0) if clients == "1" else None,
            )
        )
    return rows


def _lookup_rows(lookup: dict[str, Any]) -> list[Row]:
    rows = [
        Row(
            "status lookup",
            f"GET /api/job/{{id}} p50 at depth {int(key):,}",
            f"{_ms(lookup[key]['p50_ms'])} (p99 {_ms(lookup[key]['p99_ms'])}, "
            f"rank {lookup[key]['position']})",
        )
        for key in ("10", "100000")
    ]
    ratio = lookup["p50_ratio"]
    rows.append(
        Row(
            "status lookup",
            "p50 ratio depth 100,000 / 10",
            "n/a" if ratio is None else f"{ratio:.3f}",
            "<= 1.3",
            _check(ratio, lambda r: r <= 1.3),
        )
    )
    return rows


def _cost_rows(life: dict[str, Any], redis_cost: dict[str, Any]) -> list[Row]:
    per = life["per_job"]
    section = "cost per job"
    queue_total = redis_cost["job_life"]["total"]
    heartbeat = redis_cost["job_life"]["steps"]["heartbeat"]
    return [
        Row(
            section,
            "Upstash requests per job's life (API + worker)",
            f"{per['life']['upstash_requests']:.2f} (API {per['api']['upstash_requests']:.2f}, "
            f"worker {per['worker']['upstash_requests']:.2f})",
            "<= 6",
            per["life"]["upstash_requests"] <= 6,
        ),
        Row(
            section,
            "Redis commands per job's life (API + worker)",
            f"{per['life']['redis_commands']:.2f} (inside scripts included)",
        ),
        Row(
            section,
            "queue alone: enqueue+claim+heartbeat+ack",
            f"{queue_total['requests']} requests, {queue_total['commands']} commands "
            f"(heartbeat {heartbeat['requests']} / {heartbeat['commands']})",
        ),
        Row(
            section,
            "PostgREST round trips per job (API + worker)",
            f"{per['life']['postgrest_round_trips']:.2f} "
            f"(API {per['api']['postgrest_round_trips']:.2f}, "
            f"worker {per['worker']['postgrest_round_trips']:.2f})",
        ),
        Row(
            "idle schedule",
            "per idle hour (60 sweeps)",
            f"{life['idle_hour']['upstash_requests']} Upstash requests, "
            f"{life['idle_hour']['redis_commands']} Redis commands, "
            f"{life['idle_hour']['postgrest_round_trips']} PostgREST round trips",
        ),
    ]


def _worker_rows(overhead: dict[str, Any], refill: dict[str, Any]) -> list[Row]:
    steps = overhead["steps"]["median_ms"]
    inner = ", ".join(f"{name} {ms:.1f}" for name, ms in steps.items())
    drains = overhead["drain"]
    return [
        Row(
            "worker",
            "overhead per job, steps (median ms)",
            f"{overhead['steps']['sum_of_medians_ms']:.1f} ms ({inner})",
        ),
        Row(
            "worker",
            "drain, zero-delay generator",
            f"1 slot: {drains['1']['per_job_ms']:.1f} ms/job; "
            f"5 slots: {drains['5']['jobs_per_second']:.1f} jobs/s",
        ),
        Row(
            "worker",
            "slot refill (finish -> next start) median / max",
            f"{_ms(refill['median_ms'])} / {_ms(refill['max_ms'])} ({refill['refills']} refills)",
            "<= 1 s",
            refill["max_ms"] <= 1000,
        ),
    ]


_COLD_LABELS = {
    "shipped": "as `make build` ships it, bytecode compiled",
    "no_bytecode": "  same without bytecode (a plain `sam build`)",
    "checkout": "checkout's venv, no build",
}


def _cold_rows(cold: dict[str, Any]) -> list[Row]:
    rows = []
    judged = cold["judged"]
    for key in ("api", "worker"):
        entry = cold[key]
        runs = entry[judged]
        heavy = ", ".join(f"{h['package']} {h['ms']:.0f}" for h in entry["breakdown"][:4])
        rows.append(
            Row(
                "cold start",
                f"import {entry['module']}, median of {len(runs['wall_runs_ms'])}",
                f"{runs['cpu_median_ms']:.0f} ms CPU, {runs['median_ms']:.0f} ms wall "
                f"({_COLD_LABELS[judged]})",
            )
        )
        if "no_bytecode" in entry:
            runs = entry["no_bytecode"]
            rows.append(
                Row(
                    "cold start",
                    _COLD_LABELS["no_bytecode"],
                    f"{runs['cpu_median_ms']:.0f} ms CPU, {runs['median_ms']:.0f} ms wall",
                )
            )
        rows.append(Row("cold start", "  heaviest packages (self ms)", heavy))
        first = entry["first_invocation"]
        target = TARGETS_MS[key]
        rows.append(
            Row(
                "cold start",
                "  import + first invocation (no network)",
                f"{first['cpu_median_ms']:.0f} ms CPU, {first['median_ms']:.0f} ms wall",
                f"<= {target:.0f} ms CPU",
                first["cpu_median_ms"] <= target,
            )
        )
    if cold["built"]:
        value = (
            f"api {cold['api']['function_size_mb']} MB, worker "
            f"{cold['worker']['function_size_mb']} MB, layer {cold['layer_size_mb']} MB "
            f"(unzipped; built {cold['build_time']})"
        )
    else:
        value = "not built (.aws-sam/build missing: run `make sam-build`)"
    rows.append(Row("cold start", "built size", value))
    return rows


def render(rows: list[Row]) -> str:
    widths = [
        max(len(r.section) for r in rows),
        max(len(r.name) for r in rows),
        max(len(r.value) for r in rows),
        max(len(r.target) for r in rows),
    ]
    header = ("section", "measure", "value", "target", "")
    lines = [_line(header, widths), _line((*("-" * w for w in widths), ""), widths)]
    lines += [_line((r.section, r.name, r.value, r.target, r.verdict), widths) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
    return "  ".join([*padded, cells[-1]])
