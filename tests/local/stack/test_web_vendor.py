"""supabase-js for the page, from the pinned npm package: `mount_web` serves its UMD bundle at
/web/vendor/supabase.js (where the page looks by default), and a static host gets the same
file copied beside the page by `make web`; nothing of it is committed."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from storyq_local.config import project_root
from storyq_local.stack import web
from storyq_local.stack.web import (
    SUPABASE_JS_PACKAGE_FILE,
    SUPABASE_JS_PATH,
    installed_supabase_js,
    mount_web,
)
from tests.support.stack import WEB_DIR

ROOT = project_root()
URL = f"/web/{SUPABASE_JS_PATH}"


def _client(directory: Path, supabase_js: Path | None = None) -> TestClient:
    app = FastAPI()
    mount_web(app, directory, supabase_js=supabase_js)
    return TestClient(app)


@pytest.fixture(scope="module")
def bundle() -> Path:
    found = installed_supabase_js()
    if found is None:
        pytest.fail("supabase-js is not installed: `npm ci` (make test and make dev run it)")
    return found


def test_the_installed_bundle_is_the_pinned_supabase_js(bundle: Path) -> None:
    manifest = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))
    pinned = manifest["dependencies"]["@supabase/supabase-js"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin an exact version"
    installed = json.loads((bundle.parents[2] / "package.json").read_text(encoding="utf-8"))
    assert installed["version"] == pinned
    # One self-contained script that defines the global `supabase` (no import, no require).
    text = bundle.read_text(encoding="utf-8")
    assert text.startswith("var supabase=")
    assert "require(" not in text[:2000]


def test_the_page_gets_the_bundle_from_its_own_origin(bundle: Path) -> None:
    with _client(WEB_DIR) as client:
        answer = client.get(URL)
        assert answer.status_code == 200
        assert answer.content == bundle.read_bytes()
        assert answer.headers["content-type"].startswith("text/javascript")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert client.head(URL).status_code == 200
        # The rest of the folder is still served as before.
        assert client.get("/web/app.js").status_code == 200


def test_a_given_bundle_is_served_instead(tmp_path: Path) -> None:
    other = tmp_path / "supabase.js"
    other.write_text("var supabase = {};\n")
    with _client(WEB_DIR, supabase_js=other) as client:
        assert client.get(URL).text == "var supabase = {};\n"


def test_without_the_package_the_folders_copy_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web, "installed_supabase_js", lambda: None)
    (tmp_path / "index.html").write_text("<!doctype html><html><head></head></html>")
    with _client(tmp_path) as client:
        assert client.get(URL).status_code == 404  # the page then signs in with a token
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "supabase.js").write_text("var supabase = 'copied';\n")
    with _client(tmp_path) as client:
        assert client.get(URL).text == "var supabase = 'copied';\n"  # as `make web` leaves it


def test_the_page_looks_where_the_bundle_is_served() -> None:
    account = (WEB_DIR / "account.js").read_text(encoding="utf-8")
    assert f"const SUPABASE_SCRIPT = '{SUPABASE_JS_PATH}';" in account


def test_the_deploy_copy_step_names_the_installed_file() -> None:
    """`make web` and web/README.md copy the npm package's file to web/vendor/supabase.js."""
    source = SUPABASE_JS_PACKAGE_FILE.as_posix()
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"cp {source} web/{SUPABASE_JS_PATH}" in makefile
    readme = (WEB_DIR / "README.md").read_text(encoding="utf-8")
    assert source in readme
    assert "make web" in readme


def test_no_bundle_is_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", f"web/{SUPABASE_JS_PATH}"], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, "web/vendor/ must be gitignored"
    tracked = subprocess.run(
        ["git", "ls-files", "web/vendor", "node_modules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert tracked.stdout == ""
