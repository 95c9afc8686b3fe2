"""The tables `python -m bench.cost` prints: storyq beside BullMQ with the targets, then where
storyq's commands go."""

from __future__ import annotations

from typing import Any


def _verdict(value: int, target: int) -> str:
    return "ok" if value <= target else "over"


def render(measured: dict[str, Any], cost: dict[str, Any]) -> str:
    return "\n".join(
        [*_summary(measured, cost), "", *_story_steps(measured), *_idle(measured, cost)]
    )


def _summary(measured: dict[str, Any], cost: dict[str, Any]) -> list[str]:
    bull, targets = cost["bullmq"], cost["targets"]
    version = measured["bullmq"]["job"]["bullmq"]
    rows: list[tuple[str, str, str, str, str]] = [
        ("Billed Upstash commands", "storyq", f"BullMQ {version}", "target", ""),
        (
            f"one {measured['generation_seconds']:g} s story, worker + API",
            str(cost["story_billed_commands"]),
            str(bull["story_billed_commands"]),
            f"<= {targets['story_billed_commands']}",
            _verdict(cost["story_billed_commands"], targets["story_billed_commands"]),
        ),
        (
            "  + reference client, polling",
            str(cost["story_billed_commands_with_client_polling"]),
            str(bull["story_billed_commands_with_client"]),
            f"<= {targets['story_billed_commands_with_client']}",
            _verdict(
                cost["story_billed_commands_with_client_polling"],
                targets["story_billed_commands_with_client"],
            ),
        ),
        (
            "  + reference client, Realtime on",
            str(cost["story_billed_commands_with_client_realtime"]),
            "",
            f"<= {targets['story_billed_commands_with_client']}",
            _verdict(
                cost["story_billed_commands_with_client_realtime"],
                targets["story_billed_commands_with_client"],
            ),
        ),
        (
            "idle hour, as deployed (schedule)",
            f"{cost['idle_billed_commands_per_hour']:,}",
            f"{bull['idle_billed_commands_per_hour']:,}",
            f"<= {targets['idle_billed_commands_per_hour']:,}",
            _verdict(
                cost["idle_billed_commands_per_hour"], targets["idle_billed_commands_per_hour"]
            ),
        ),
        (
            "idle hour, `make dev` worker loop",
            f"{cost['idle_billed_commands_per_hour_dev_loop']:,}",
            f"{bull['idle_billed_commands_per_hour']:,}",
            "",
            "",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for n, row in enumerate(rows):
        lines.append(
            f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  "
            f"{row[3]:<{widths[3]}}  {row[4]}".rstrip()
        )
        if n == 0:
            lines.append("-" * len(lines[0]))
    return lines


def _step_lines(steps: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name, step in steps.items():
        commands: dict[str, int] = {}
        for script in step["scripts"].values():
            for command, n in script["commands"].items():
                commands[command] = commands.get(command, 0) + n
        inner = ", ".join(f"{c} {n}" for c, n in commands.items())
        lines.append(f"  {name:<46} {step['calls']:>4} calls {step['billed']:>5}   ({inner})")
    return lines


def _story_steps(measured: dict[str, Any]) -> list[str]:
    polling, realtime = measured["storyq"]["polling"], measured["storyq"]["realtime"]
    story = polling["story"]
    lines = [
        f"storyq, one story step by step ({story['billed']} billed)",
        *_step_lines(story["steps"]),
    ]
    for label, found in (("polling", polling), ("Realtime on", realtime)):
        client = found["client"]
        by_status = ", ".join(f"{s} {n}" for s, n in client["polls_by_status"].items())
        woken = (
            f"; {client['woken_by_row_change']} woken by {client['row_changes_seen']} row changes"
            if client["realtime"]
            else ""
        )
        lines.append(
            f"reference client, {label}: {client['polls']} polls ({by_status}{woken}), "
            f"{found['story']['client_billed']} billed"
        )
        lines += _step_lines(found["story"]["client_steps"])
    lines.append(
        f"(the Realtime run's own story: {realtime['story']['billed']} billed, "
        f"beside {story['billed']} in the polling run)"
    )
    return lines


def _idle(measured: dict[str, Any], cost: dict[str, Any]) -> list[str]:
    idle = measured["storyq"]["polling"]["idle-1"]
    dev = measured["storyq"]["dev"]
    lines = [
        "",
        f"idle scheduled invocation: {idle['commandstats']['billed']} billed (x 60 an hour; "
        f"about {cost['schedule_during_story']} during one story, counted as idle, not in it)",
        *_step_lines(idle["steps"]),
        f"`make dev` worker loop, {dev['window_seconds']:.0f} s idle: {dev['bill']['billed']} "
        f"billed (claim every {dev['poll_seconds']:g} s, sweep every {dev['sweep_seconds']:g} s)",
    ]
    for name, group in dev["calls"].items():
        lines.append(f"  {name:<46} {group['calls']:>4} calls {group['billed']:>5}")
    bull = cost["bullmq"]
    for mode, run in measured["bullmq"].items():
        top = sorted(run["bill"]["by_command"].items(), key=lambda item: -item[1])[:8]
        lines.append(
            f"BullMQ {mode} ({run['wall_seconds']:.0f} s): {run['bill']['billed']} billed; "
            + ", ".join(f"{c} {n}" for c, n in top)
        )
    lines.append(
        f"BullMQ's job figures leave out its idle loop over the job's seconds "
        f"({bull['background_per_second']:g}/s, as measured idle): "
        f"{bull['story_billed_commands_gross']} - {bull['story_billed_commands_background']} "
        f"and {bull['story_billed_commands_with_client_gross']} - "
        f"{bull['story_billed_commands_with_client_background']}"
    )
    return lines
