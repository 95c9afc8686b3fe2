"""Settings refuse the local development secrets anywhere but dev."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from storyq.config import Settings


def test_dev_defaults_work_with_no_configuration() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.storyq_env == "dev"
    assert settings.max_active_jobs == 5
    assert settings.max_attempts == 3


def test_prod_refuses_dev_secrets() -> None:
    with pytest.raises(ValidationError, match="refuses the local development secrets"):
        Settings(_env_file=None, storyq_env="prod")  # type: ignore[call-arg]


def test_prod_accepts_real_secrets() -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        storyq_env="prod",
        upstash_redis_rest_token="a-real-upstash-token",  # type: ignore[arg-type]
        supabase_service_role_key="a-real-service-key",  # type: ignore[arg-type]
        supabase_jwt_secret="a-real-jwt-secret-of-enough-length",  # type: ignore[arg-type]
    )
    assert settings.storyq_env == "prod"


def test_cors_origins_read_as_the_template_passes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    assert Settings(_env_file=None).cors_origins == [  # type: ignore[call-arg]
        "https://a.example",
        "https://b.example",
    ]
    monkeypatch.setenv("CORS_ORIGINS", '["https://c.example"]')
    assert Settings(_env_file=None).cors_origins == ["https://c.example"]  # type: ignore[call-arg]


def test_model_prices_read_as_pairs_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_PRICES", "gpt-4o=2.5/10, *=1/4")
    assert Settings(_env_file=None).model_prices == {  # type: ignore[call-arg]
        "gpt-4o": (2.5, 10.0),
        "*": (1.0, 4.0),
    }
    monkeypatch.setenv("MODEL_PRICES", "")  # the SAM template's empty parameter: the default
    assert Settings(_env_file=None).model_prices == {  # type: ignore[call-arg]
        "gpt-4o-mini": (0.15, 0.60)
    }
    monkeypatch.setenv("MODEL_PRICES", '{"org/model=v2": [0.1, 0.2]}')
    assert Settings(_env_file=None).model_prices == {  # type: ignore[call-arg]
        "org/model=v2": (0.1, 0.2)
    }


@pytest.mark.parametrize(
    "text", ["gpt-4o=2.5", "=1/2", "gpt-4o=-1/2", "gpt-4o=a/b", "gpt-4o=nan/1", "gpt-4o=1/inf"]
)
def test_a_malformed_model_price_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("MODEL_PRICES", text)
    with pytest.raises(ValidationError, match=r"(?i)model_prices"):
        Settings(_env_file=None)  # type: ignore[call-arg]
