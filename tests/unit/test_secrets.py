"""In Lambda, secrets come from SSM SecureString parameters, never from the environment."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from storyq.config import Settings
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


def test_without_a_path_nothing_is_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORYQ_SECRETS_PATH", raising=False)
    assert load_secrets() == {}
