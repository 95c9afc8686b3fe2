#!/usr/bin/env bash
# Puts storyq's secrets into SSM Parameter Store as SecureString parameters, where the
# functions read them at cold start (STORYQ_SECRETS_PATH=<prefix>/<stage>).
#
#   infra/put-secrets.sh dev            # prompts for each value (input hidden)
#   UPSTASH_REDIS_REST_TOKEN=... SUPABASE_SERVICE_ROLE_KEY=... SUPABASE_JWT_SECRET=... \
#     infra/put-secrets.sh prod         # or from the environment (CI)
#
# OPENAI_API_KEY is optional (only for GENERATOR=openai). Needs the AWS CLI and credentials.
set -euo pipefail

stage="${1:?usage: infra/put-secrets.sh STAGE [PREFIX]  (STAGE: dev or prod)}"
prefix="${2:-/storyq}"
path="${prefix%/}/${stage}"

put() {
  local name="$1" variable="$2" required="$3" value="${!2:-}"
  if [ -z "$value" ] && [ -t 0 ]; then
    read -r -s -p "$variable (${required}): " value
    echo
  fi
  if [ -z "$value" ]; then
    if [ "$required" = "required" ]; then
      echo "missing $variable" >&2
      exit 1
    fi
    echo "skipped $path/$name"
    return
  fi
  aws ssm put-parameter --name "$path/$name" --type SecureString --overwrite \
    --value "$value" >/dev/null
  echo "stored  $path/$name"
}

put upstash-token UPSTASH_REDIS_REST_TOKEN required
put supabase-service-role-key SUPABASE_SERVICE_ROLE_KEY required
put supabase-jwt-secret SUPABASE_JWT_SECRET optional
put openai-api-key OPENAI_API_KEY optional
echo "done: deploy with  sam build && sam deploy --guided --parameter-overrides Stage=$stage SecretsPrefix=$prefix ..."
