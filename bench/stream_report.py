"""The figures of bench/stream_cancel.py from what it measured, and their printed table."""

from __future__ import annotations

import statistics
from typing import Any

WRITE = "write_story_texts"
HEARTBEAT = "heartbeat_story_jobs"


def _p50_max(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "max": None}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "max": round(max(values), 3),
    }


def _per(value: float, stories: int) -> float:
    return round(value / stories, 1)


def summary(measured: dict[str, Any], *, streamed_stories: int) -> dict[str, Any]:
    samples = measured["cancels"]["samples"]
    stream = measured["streamed"]
    n = streamed_stories
    requests, relay = stream["postgrest_requests"], stream["relay"]
    wal = stream["wal"]["by_table"]
    stories_wal = wal.get("stories", {})
    jobs_wal = wal.get("story_jobs", {})
    stats = stream["table_stats"]
    return {
        "delete_to_stop_s": _p50_max([s["stop_s"] for s in samples if s["stop_s"] is not None]),
        "delete_to_cancelled_row_s": _p50_max([s["ended_s"] for s in samples]),
        "delete_to_next_start_s": _p50_max([s["next_start_s"] for s in samples]),
        "delete_answer_s": _p50_max([s["answer_s"] for s in samples]),
        "cancels_with_text_kept": measured["cancels"]["stories_cancelled_with_text"],
        "cancels_refunded": measured["cancels"]["refunded"],
        "per_streamed_story": {
            "words": _per(stream["story_words"], n),
            "utf8_bytes": _per(stream["story_utf8_bytes"], n),
            "write_story_texts_requests": _per(requests.get(WRITE, 0), n),
            "heartbeat_story_jobs_requests": _per(requests.get(HEARTBEAT, 0), n),
            "postgrest_requests_all": _per(sum(requests.values()), n),
            "write_request_bytes": _per(relay["sent"].get(WRITE, 0), n),
            "write_body_bytes": _per(relay["body"].get(WRITE, 0), n),
            "heartbeat_request_bytes": _per(relay["sent"].get(HEARTBEAT, 0), n),
            "all_request_bytes": _per(sum(relay["sent"].values()), n),
            "stories_rows_updated": _per(stats.get("stories", {}).get("updated", 0), n),
            "stories_rows_hot_updated": _per(stats.get("stories", {}).get("hot_updated", 0), n),
            "story_jobs_rows_updated": _per(stats.get("story_jobs", {}).get("updated", 0), n),
            "wal_bytes": _per(stream["wal"]["total_bytes"], n),
            "wal_bytes_stories": _per(stories_wal.get("record_bytes", 0), n),
            "wal_bytes_stories_toast": _per(stories_wal.get("toast_bytes", 0), n),
            "wal_bytes_story_jobs": _per(jobs_wal.get("record_bytes", 0), n),
            "wal_full_page_image_bytes": _per(
                sum(t.get("full_page_image_bytes", 0) for t in wal.values()), n
            ),
            "upstash_billed_workers_run": _per(stream["upstash_billed_workers_run"]["billed"], n),
        },
        "upstash_billed_while_writing": stream["upstash_while_writing"],
    }


def _range(figure: dict[str, Any], unit: str = "s") -> str:
    if figure["p50"] is None:
        return "not measured"
    return f"{figure['p50']:.2f} / {figure['max']:.2f} {unit} (n={figure['n']})"


def render(figures: dict[str, Any], settings: dict[str, Any]) -> str:
    story = figures["per_streamed_story"]
    quiet = figures["upstash_billed_while_writing"]
    lines = [
        f"MAX_ACTIVE_JOBS {settings['max_active_jobs']}, {settings['worker_processes']} worker "
        f"processes, template generator over {settings['generation_delay_seconds']:g} s, "
        f"{settings['target_words']}-word target",
        "",
        "p50 / max from the DELETE being sent:",
        f"  generation stopped (worker log)      {_range(figures['delete_to_stop_s'])}",
        f"  job cancelled + refunded (row)       {_range(figures['delete_to_cancelled_row_s'])}",
        f"  next waiting job started (row)       {_range(figures['delete_to_next_start_s'])}",
        f"  the DELETE's answer                  {_range(figures['delete_answer_s'])}",
        "",
        f"per streamed story ({story['words']:.0f} words, {story['utf8_bytes']:.0f} bytes):",
        f"  write_story_texts requests           {story['write_story_texts_requests']:g}"
        f" ({story['write_request_bytes']:.0f} bytes sent, bodies {story['write_body_bytes']:.0f})",
        f"  heartbeat_story_jobs requests        {story['heartbeat_story_jobs_requests']:g}"
        f" ({story['heartbeat_request_bytes']:.0f} bytes sent)",
        f"  all PostgREST requests               {story['postgrest_requests_all']:g}"
        f" ({story['all_request_bytes']:.0f} bytes sent)",
        f"  stories rows updated (HOT)           {story['stories_rows_updated']:g}"
        f" ({story['stories_rows_hot_updated']:g})",
        f"  story_jobs rows updated              {story['story_jobs_rows_updated']:g}",
        f"  WAL bytes                            {story['wal_bytes']:.0f}: stories "
        f"{story['wal_bytes_stories']:.0f} (TOAST {story['wal_bytes_stories_toast']:.0f}), "
        f"story_jobs {story['wal_bytes_story_jobs']:.0f}; full-page images "
        f"{story['wal_full_page_image_bytes']:.0f}",
        f"  billed Upstash commands, the workers' whole run (first sweeps, claims, acks, idle "
        f"polls) {story['upstash_billed_workers_run']:g}",
        f"  billed Upstash commands while only writing ({quiet['seconds']:g} s, "
        f"{settings['streamed_stories']} stories): {quiet['billed']}",
    ]
    return "\n".join(lines)
