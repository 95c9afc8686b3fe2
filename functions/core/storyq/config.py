"""Settings: the one place that reads the environment.

Validated once at cold start (``get_settings``). Tests build their own ``Settings(...)`` and
pass it down; nothing here connects to anything.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# Local development defaults. They work out of the box with `make dev` and the `storyq` CLI,
# and are refused when STORYQ_ENV is anything but "dev" (see `_refuse_dev_secrets`).
DEV_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"
DEV_SERVICE_ROLE_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vf"
    "cm9sZSIsImlhdCI6MTc2NDAwMDAwMCwiZXhwIjoyMDc5NjAwMDAwfQ.z6w9YHBbFL4cwMS7vS_-Sbph4OEIudEc2aeDiI6Bpg0"
)
DEV_ANON_KEY = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJp"
    "YXQiOjE3NjQwMDAwMDAsImV4cCI6MjA3OTYwMDAwMH0.aSMNYqmSRaFG4Nh1EMsjRB925f5jyPM2KY_PEEvtTg4"
)
DEV_UPSTASH_TOKEN = "storyq-local-upstash-token"
DEV_UPSTASH_URL = "http://127.0.0.1:8079"
DEV_SUPABASE_URL = "http://127.0.0.1:54321"

_DEV_SECRETS = {DEV_JWT_SECRET, DEV_SERVICE_ROLE_KEY, DEV_UPSTASH_TOKEN}
# US dollars per million prompt / completion tokens (MODEL_PRICES when it is empty or unset).
DEFAULT_MODEL_PRICES = {"gpt-4o-mini": (0.15, 0.60)}


class SecretsLocation(BaseSettings):
    """Where the secrets are: read first, on its own, since the rest of Settings may need them."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # The SSM path of the SecureString parameters (see storyq.secrets); unset locally.
    storyq_secrets_path: str | None = None


class Settings(SecretsLocation):
    """Everything the functions and the CLI are configured with, from the environment or .env
    (and, in AWS, the SSM parameters under STORYQ_SECRETS_PATH)."""

    # "dev" accepts the local defaults below; anything else refuses them (see the validator).
    storyq_env: Literal["dev", "prod"] = "dev"

    upstash_redis_rest_url: str = DEV_UPSTASH_URL
    upstash_redis_rest_token: SecretStr = SecretStr(DEV_UPSTASH_TOKEN)
    # The SDK's own default is one retry after 3 s; a queue prefers to fail fast and sweep later.
    upstash_rest_retries: int = Field(default=1, ge=0, le=5)
    upstash_rest_retry_interval: float = Field(default=0.2, ge=0)

    supabase_url: str = DEV_SUPABASE_URL
    supabase_service_role_key: SecretStr = SecretStr(DEV_SERVICE_ROLE_KEY)
    supabase_anon_key: str = DEV_ANON_KEY
    supabase_jwt_secret: SecretStr | None = SecretStr(DEV_JWT_SECRET)
    supabase_jwt_issuer: str | None = None
    supabase_jwks_url: str | None = None
    http_timeout_seconds: float = Field(default=10.0, gt=0)

    max_active_jobs: int = Field(default=5, ge=1, le=1000)
    max_attempts: int = Field(default=3, ge=1, le=20)
    story_cost: int = Field(default=1, ge=0)
    free_credits: int = Field(default=0, ge=0)
    # An Idempotency-Key is remembered this long, whatever cleaning does to its job row.
    idempotency_ttl_seconds: float = Field(default=86400.0, gt=0)
    # A job still waiting this long after it was queued, never started, is cancelled
    # (cancelReason "expired") and refunded by the sweep.
    job_ttl_seconds: float = Field(default=86400.0, gt=0)

    generator: Literal["template", "openai"] = "template"
    generation_delay_seconds: float = Field(default=0.0, ge=0)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    # Tried in turn after OPENAI_MODEL, within one attempt, when a model is overloaded or
    # unavailable before its first token (see storyq.generation.openai_chat). Comma-separated
    # in the environment, or a JSON list.
    openai_fallback_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # A model that sends no text this long after the request is taken as stalled.
    openai_first_token_timeout_seconds: float = Field(default=60.0, gt=0)
    # What a model's tokens cost, in US dollars per million prompt / completion tokens, for the
    # cost recorded per attempt (storyq.generation.pricing). In the environment
    # `model=prompt/completion` pairs, comma-separated (`*` prices any model not listed), or a
    # JSON object {"model": [prompt, completion]}; empty: the default, OpenAI's list price of
    # gpt-4o-mini (the default model) when this was written: set yours.
    model_prices: Annotated[dict[str, tuple[float, float]], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_PRICES)
    )

    # Leases and liveness. An attempt is live while its Postgres heartbeat (sent every
    # min(1 s, lease_seconds / 4)) is younger than lease_seconds: older, it is dead, and a sweep
    # or a start counts it as a lost attempt. Its worker stops generating once it has gone
    # 2/3 of that without a confirmed heartbeat, so a dead attempt has stopped. The Redis lease
    # only holds the slot: see `dispatch_lease_seconds`.
    lease_seconds: float = Field(default=60.0, gt=0)
    generation_timeout_seconds: float = Field(default=600.0, gt=0)
    retry_base_seconds: float = Field(default=5.0, ge=0)
    retry_max_seconds: float = Field(default=300.0, ge=0)
    worker_poll_seconds: float = Field(default=2.0, gt=0)
    # A Lambda invocation stops claiming when less than timeout + margin remains.
    worker_time_margin_seconds: float = Field(default=30.0, ge=0)

    # Per-user limits on POST /api/generate and on reads (sliding windows).
    generate_rate_limit: int = Field(default=10, ge=1)
    generate_rate_window_seconds: int = Field(default=60, ge=1)
    read_rate_limit: int = Field(default=300, ge=1)
    read_rate_window_seconds: int = Field(default=60, ge=1)

    worker_function_name: str | None = None
    # A comma-separated list in the environment (what the SAM template passes) or a JSON list.
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://127.0.0.1:8000", "http://localhost:8000"]
    )

    @field_validator("cors_origins", "openai_fallback_models", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

    @field_validator("model_prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if not text:  # what the SAM template passes when the ModelPrices parameter is empty
            return dict(DEFAULT_MODEL_PRICES)
        if text.startswith("{"):
            return json.loads(text)
        prices: dict[str, tuple[str, str]] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            model, equals, pair = item.rpartition("=")
            prompt, slash, completion = pair.partition("/")
            if not (equals and slash and model.strip()):
                raise ValueError(
                    f"MODEL_PRICES: {item!r} is not model=prompt/completion (USD per million)"
                )
            prices[model.strip()] = (prompt.strip(), completion.strip())
        return prices

    @field_validator("model_prices")
    @classmethod
    def _no_negative_prices(
        cls, value: dict[str, tuple[float, float]]
    ) -> dict[str, tuple[float, float]]:
        for model, (prompt, completion) in value.items():
            if not (math.isfinite(prompt) and math.isfinite(completion)):
                raise ValueError(f"MODEL_PRICES: the price of {model!r} is not a number")
            if prompt < 0 or completion < 0:
                raise ValueError(f"MODEL_PRICES: the price of {model!r} is negative")
        return value

    @model_validator(mode="after")
    def _refuse_dev_secrets(self) -> Settings:
        if self.storyq_env == "dev":
            return self
        in_use = {
            self.upstash_redis_rest_token.get_secret_value(),
            self.supabase_service_role_key.get_secret_value(),
        }
        if self.supabase_jwt_secret is not None:
            in_use.add(self.supabase_jwt_secret.get_secret_value())
        if in_use & _DEV_SECRETS:
            raise ValueError(
                f"STORYQ_ENV={self.storyq_env} refuses the local development secrets: "
                "set UPSTASH_REDIS_REST_TOKEN, SUPABASE_SERVICE_ROLE_KEY and SUPABASE_JWT_SECRET"
            )
        if self.supabase_jwt_secret is None and self.supabase_jwks_url is None:
            raise ValueError("set SUPABASE_JWT_SECRET or SUPABASE_JWKS_URL to verify tokens")
        return self

    @property
    def dispatch_lease_seconds(self) -> float:
        """The Redis lease of a running attempt, in seconds: the longest a healthy attempt runs
        (`generation_timeout_seconds`) plus one `lease_seconds`. Liveness is Postgres's (the
        heartbeat above; the sweep requeues an attempt silent there for `lease_seconds`, and
        Redis follows), so the Redis lease only has to outlive every healthy attempt and is
        not renewed while one runs. Renewing it every lease / 3 cost 5 billed commands a
        time on Upstash, about 70 per 270 s story (issue 18)."""
        return self.generation_timeout_seconds + self.lease_seconds

    @property
    def jwks_url(self) -> str:
        """Where the project publishes its asymmetric signing keys."""
        return (
            self.supabase_jwks_url
            or f"{self.supabase_url.rstrip('/')}/auth/v1/.well-known/jwks.json"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (at cold start in Lambda, secrets from SSM)."""
    from storyq.secrets import load_secrets

    secrets = load_secrets(SecretsLocation().storyq_secrets_path)
    return Settings(**secrets)  # type: ignore[arg-type]  # str values, coerced by pydantic
