#!/usr/bin/env bash
# Submit a vrft run to a running Ray cluster and follow its logs until it ends:
#   deploy/submit.sh configs/visual_rft/coco_8cls_4shot_2b.yaml [section.key=value ...] [--run-dir DIR]
# Exit status: 0 when the job succeeds, 1 when it fails (`ray job submit` blocks and tails the logs).
# Environment:
#   RAY_ADDRESS          the head's dashboard (default http://127.0.0.1:8265)
#   RAY_AUTH_MODE        Ray 2.60 heads keep token authentication on: the client must send the token
#                        (from RAY_AUTH_TOKEN or ~/.ray/auth_token), so this defaults to "token"
#   VRFT_RUNS            where run dirs go, an absolute path every node sees (default: $PWD/runs);
#                        the uploaded working dir is a temporary copy, see deploy/runtime_env.yaml
#   VRFT_SUBMISSION_ID   a job id of your own (for `ray job logs/status/stop ID`)
# The repo is the working dir; model.path and data.path must be absolute (or hub ids) in a job.
set -euo pipefail
config=${1:?usage: deploy/submit.sh CONFIG [overrides...] [--run-dir DIR]}
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export RAY_ADDRESS=${RAY_ADDRESS:-http://127.0.0.1:8265}
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
runs=${VRFT_RUNS:-$PWD/runs}
case $config in /*) ;; *) config=${config#./} ;; esac
extra=()
if [[ -n ${VRFT_SUBMISSION_ID:-} ]]; then
  extra+=(--submission-id "$VRFT_SUBMISSION_ID")
fi
exec ray job submit --working-dir "$repo" --runtime-env "$repo/deploy/runtime_env.yaml" "${extra[@]}" \
  -- vrft train "$config" "run.output_dir=$runs" "$@"
