"""mount_web: the page at `/` and under `/web/`, without shadowing the API or its docs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from storyq.config import Settings
from storyq_local.stack.apps import api_app
from storyq_local.stack.web import default_web_directory, mount_web
from tests.support.stack import WEB_DIR


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[httpx.Client]:
    """The API with the page, as `make dev` serves it (in process)."""
    with TestClient(api_app(settings, web=WEB_DIR)) as client:
        yield client


def test_index_is_served_at_root_with_a_base_for_its_assets(api: httpx.Client) -> None:
    answer = api.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert '<base href="/web/">' in answer.text
    assert '<script type="module" src="app.js">' in answer.text
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in answer.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/web/", "text/html"),
        ("/web/index.html", "text/html"),
        ("/web/app.js", "javascript"),
        ("/web/storyq-client.js", "javascript"),
        ("/web/config.js", "javascript"),
        ("/web/styles.css", "text/css"),
    ],
)
def test_assets_are_served_under_web(api: httpx.Client, path: str, kind: str) -> None:
    answer = api.get(path)
    assert answer.status_code == 200, path
    assert kind in answer.headers["content-type"]
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_every_module_of_the_page_is_served_as_javascript(api: httpx.Client) -> None:
    """app.js imports the page's other modules: under nosniff, one served as anything but
    JavaScript (or missing) is refused and the page never starts."""
    names = sorted(path.name for path in WEB_DIR.glob("*.js"))
    assert "app.js" in names
    for name in names:
        answer = api.get(f"/web/{name}")
        assert answer.status_code == 200, name
        assert "javascript" in answer.headers["content-type"], name
        assert answer.text == (WEB_DIR / name).read_text(), name


def test_the_page_is_the_committed_file(api: httpx.Client) -> None:
    """No build step: what is committed is what is served."""
    assert api.get("/web/storyq-client.js").text == (WEB_DIR / "storyq-client.js").read_text()
    assert api.get("/web/index.html").text == (WEB_DIR / "index.html").read_text()


def test_the_api_and_its_docs_are_not_shadowed(api: httpx.Client) -> None:
    assert api.get("/api/health").json()["status"] == "ok"
    assert api.get("/docs").status_code == 200
    assert api.get("/openapi.json").json()["info"]["title"] == "storyq"
    unknown = api.get("/api/no-such-thing")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert api.get("/api/jobs").status_code == 401  # still the API's, still needs a token


def test_nothing_outside_the_folder_is_served(api: httpx.Client) -> None:
    assert api.get("/web/../pyproject.toml").status_code == 404
    assert api.get("/web/%2e%2e/pyproject.toml").status_code == 404
    assert api.get("/pyproject.toml").status_code == 404
    assert api.get("/web/no-such-file.js").status_code == 404


def test_the_page_is_not_in_the_openapi_document(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert all(path.startswith("/api/") for path in paths)


def test_mount_web_refuses_a_folder_without_index(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        mount_web(FastAPI(), tmp_path)


def test_default_web_directory_is_the_checkouts() -> None:
    assert default_web_directory() == WEB_DIR
