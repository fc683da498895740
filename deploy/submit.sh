#!/usr/bin/env bash
# Submit a vrft run to a running Ray cluster:
#   deploy/submit.sh configs/visual_rft/coco_8cls_4shot_2b.yaml [section.key=value ...]
# RAY_ADDRESS defaults to the local head's dashboard. Ray 2.60 keeps token authentication on: the
# client reads the token from RAY_AUTH_TOKEN or ~/.ray/auth_token (see `ray start --help`).
set -euo pipefail
config=${1:?usage: deploy/submit.sh CONFIG [overrides...]}
shift
export RAY_ADDRESS=${RAY_ADDRESS:-http://127.0.0.1:8265}
exec ray job submit --working-dir . \
  --runtime-env-json '{"excludes": [".venv", ".venv-vllm", "runs", ".cache", ".git"], "env_vars": {"TOKENIZERS_PARALLELISM": "false"}}' \
  -- vrft train "$config" "$@"
