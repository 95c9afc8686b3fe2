"""In Lambda, secrets come from SSM SecureString parameters, never from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from storyq.config import Settings, get_settings
from storyq.secrets import load_secrets


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.mark.usefixtures("aws")
def test_secrets_under_the_path_fill_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the secrets put where infra/put-secrets.sh puts them
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    ssm = boto3.client("ssm", region_name="eu-central-1")
    values = {
        "upstash-token": "upstash-prod-token",
        "supabase-service-role-key": "service-role-prod-key",
        "supabase-jwt-secret": "prod-jwt-secret-prod-jwt-secret-0123",
        "unrelated": "ignored",
    }
    for name, value in values.items():
        ssm.put_parameter(Name=f"/storyq/prod/{name}", Value=value, Type="SecureString")

    # When they are loaded for a prod Settings
    secrets = load_secrets("/storyq/prod")
    settings = Settings(_env_file=None, storyq_env="prod", **secrets)  # type: ignore[call-arg, arg-type]

    # Then each lands in its field, decrypted, and nothing else is picked up
    assert settings.upstash_redis_rest_token.get_secret_value() == "upstash-prod-token"
    assert settings.supabase_service_role_key.get_secret_value() == "service-role-prod-key"
    assert settings.supabase_jwt_secret is not None
    assert settings.supabase_jwt_secret.get_secret_value() == values["supabase-jwt-secret"]
    assert "unrelated" not in secrets


@pytest.mark.usefixtures("aws")
def test_the_cold_start_settings_read_the_path_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a prod function whose environment names only the path, as the template does
    # (a path of its own: Powertools caches what it fetched for 300 s)
    monkeypatch.chdir(tmp_path)  # no .env
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("STORYQ_ENV", "prod")
    monkeypatch.setenv("STORYQ_SECRETS_PATH", "/storyq/cold")
    ssm = boto3.client("ssm", region_name="eu-central-1")
    for name, value in {
        "upstash-token": "upstash-from-ssm",
        "supabase-service-role-key": "service-role-from-ssm",
        "supabase-jwt-secret": "jwt-secret-from-ssm-jwt-secret-from-ssm",
    }.items():
        ssm.put_parameter(Name=f"/storyq/cold/{name}", Value=value, Type="SecureString")

    # When the settings are read at cold start
    get_settings.cache_clear()
    try:
        settings = get_settings()
    finally:
        get_settings.cache_clear()

    # Then the secrets came from SSM and the path is part of the settings
    assert settings.storyq_secrets_path == "/storyq/cold"
    assert settings.upstash_redis_rest_token.get_secret_value() == "upstash-from-ssm"
    assert settings.supabase_service_role_key.get_secret_value() == "service-role-from-ssm"


def test_without_a_path_nothing_is_fetched() -> None:
    assert load_secrets(None) == {}
