"""`python -m bench.cold_runtimes` (`make bench-runtimes`): the handlers' cold start on the
runtime the template ships (python3.13) beside the last python3.11 build, both as `make build`
ships them (bytecode compiled), CPU median of 5 in fresh interpreters (see cold_start): the
import on both, and on python3.13 the import plus the first invocation, which the targets are
judged on (what a cold start pays before it can answer; cold_start says what it includes).

The python3.11 side is the last commit that ran on python3.11 (PY311_COMMIT), checked out into
a scratch worktree and built there with `sam build` and Python 3.11 from PATH
or pyenv; the python3.13 side is this checkout's `.aws-sam/build` (`make sam-build` first).
Writes bench/results/cold_runtimes.json.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.cold_start import HANDLERS, LAYER, TARGETS_MS, shipped
from storyq_local.config import project_root

RESULTS = Path(__file__).parent / "results" / "cold_runtimes.json"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=project_root(), capture_output=True, text=True, check=True
    ).stdout.strip()


# The last commit that built and ran on python3.11: its template said python3.11, and the next
# one (a review fix, whose template still did) already used Python 3.12 generics syntax.
PY311_COMMIT = "1a8e9f643f3df317a9115ec9cfda78a09eaa399a"


def find_python(version: str) -> str:
    """`python<version>` that really is that version: on PATH, else in pyenv's versions."""
    probe = f"import sys; sys.exit(sys.version_info[:2] != {tuple(map(int, version.split('.')))})"
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [
        f"python{version}",
        *map(str, sorted(root.glob(f"versions/{version}*/bin/python{version}"), reverse=True)),
    ]
    for candidate in candidates:
        try:
            subprocess.run([candidate, "-c", probe], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            continue
        return candidate
    raise RuntimeError(f"no Python {version} on PATH or in pyenv ({root})")


def build_py311(commit: str, folder: Path) -> Path:
    """`sam build` (this machine's architecture) of `commit`, bytecode compiled as make build."""
    python = find_python("3.11")
    worktree = folder / "py311"
    _git("worktree", "add", "--detach", str(worktree), commit)
    sam = project_root() / ".venv-sam" / "bin" / "sam"
    arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    env = {**os.environ, "PATH": f"{Path(python).parent}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [str(sam), "build", "--parameter-overrides", f"Architecture={arch}"],
        cwd=worktree,
        env=env,
        check=True,
        capture_output=True,
    )
    build = worktree / ".aws-sam" / "build"
    subprocess.run(
        [
            python,
            "-m",
            "compileall",
            "-q",
            "-j",
            "0",
            "--invalidation-mode",
            "unchecked-hash",
            str(build),
        ],
        check=True,
    )
    return build


def measure() -> dict[str, Any]:
    current = project_root() / ".aws-sam" / "build"
    if not (current / LAYER / "python").is_dir():
        raise RuntimeError("no .aws-sam/build: run `make sam-build` first")
    commit = PY311_COMMIT
    with tempfile.TemporaryDirectory(prefix="storyq-py311-") as folder:
        try:
            old = shipped(build_py311(commit, Path(folder)), python=find_python("3.11"))
        finally:
            _git("worktree", "remove", "--force", str(Path(folder) / "py311"))
    load_before = os.getloadavg()
    new = shipped(current, python=find_python("3.13"), first=True)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        # CPU time grows too when other work shares the cores (caches, SMT siblings).
        "python3.13_load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "python3.11_commit": commit,
        "python3.11": old,
        "python3.13": new,
    }


def main() -> None:
    results = measure()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"{'':<8} {'import':>22} {'import + first invocation':>26}")
    print(f"{'handler':<8} {'3.11 ms':>10} {'3.13 ms':>11} {'3.13 ms':>14} {'target':>11}")
    for key in HANDLERS:
        old = results["python3.11"][key]["shipped"]["cpu_median_ms"]
        new = results["python3.13"][key]["shipped"]["cpu_median_ms"]
        first = results["python3.13"][key]["first_invocation"]["cpu_median_ms"]
        verdict = "ok" if first <= TARGETS_MS[key] else "over"
        print(
            f"{key:<8} {old:>10.1f} {new:>11.1f} {first:>14.1f} {TARGETS_MS[key]:>6.0f} {verdict}"
        )
    print(f"(CPU median of 5, as shipped; python3.11 = {results['python3.11_commit'][:10]})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
