"""Secrets for Lambda: SSM SecureString parameters read at cold start through Powertools.

The template passes only the parameters' path (STORYQ_SECRETS_PATH, read by
`config.SecretsLocation`); the values never appear in the function's configuration. Powertools
caches them (300 s by default).
"""

from __future__ import annotations

# parameter name under the path → the Settings field it fills
SECRET_FIELDS: dict[str, str] = {
    "upstash-token": "upstash_redis_rest_token",
    "supabase-service-role-key": "supabase_service_role_key",
    "supabase-jwt-secret": "supabase_jwt_secret",
    "openai-api-key": "openai_api_key",
}


def load_secrets(path: str | None) -> dict[str, str]:
    """Settings overrides from the SSM parameters under `path`, or nothing when there is no
    path (local runs)."""
    if not path:
        return {}
    from aws_lambda_powertools.utilities import parameters  # boto3 is only needed in AWS

    found = parameters.get_parameters(path.rstrip("/"), decrypt=True, max_age=300)
    return {
        SECRET_FIELDS[name]: str(value)
        for name, value in found.items()
        if name in SECRET_FIELDS and value
    }
