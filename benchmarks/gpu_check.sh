#!/usr/bin/env bash
# The prepared GPU check (issue 16, item 4): on a machine with one NVIDIA GPU and the wheels carried
# in, vLLM sampling of a Qwen2-VL-class model, NCCL weight-sync exactness, colocated sleep/wake and a
# bf16 learner step, each printing BENCH lines (benchmarks/gpu_check.py). Bounded to LIMIT_S (default
# 450 s, under the 8-minute budget) including the install from wheels.
#
#   benchmarks/gpu_check.sh [--wheels DIR] [--venv DIR] [--dry-run] [--limit-s N] [-- gpu_check.py args]
#
#   --wheels DIR  install torch, vllm and the project's dependencies from DIR only (no network:
#                 pip --no-index --find-links DIR) into --venv; without it --venv must be ready
#   --venv DIR    the Python environment to use (default: .venv-gpu, else .venv)
#   --dry-run     the CPU path (transformers engine, gloo, fp32, tiny model): what CI checks
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
WHEELS="" VENV="" DRY=0 LIMIT_S=450 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
    --venv) VENV="${2:?--venv needs a folder}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --limit-s) LIMIT_S="${2:?--limit-s needs seconds}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "gpu_check.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$LIMIT_S" in ''|*[!0-9]*) echo "gpu_check.sh: --limit-s takes whole seconds" >&2; exit 2 ;; esac
if [ -n "$WHEELS" ] && [ ! -d "$WHEELS" ]; then echo "gpu_check.sh: no wheel folder $WHEELS" >&2; exit 2; fi
if [ -z "$VENV" ]; then if [ -d .venv-gpu ] || [ -n "$WHEELS" ]; then VENV=.venv-gpu; else VENV=.venv; fi; fi

export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/torch_extensions_gpu}"
START=$(date +%s)
if [ -n "$WHEELS" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # Only what was carried in: the GPU machine reaches no registry.
  "$VENV/bin/python" -m pip install -q --no-index --find-links "$WHEELS" torch vllm deepspeed 'ray[default]' \
    pydantic datasets pillow safetensors pyyaml
  "$VENV/bin/python" -m pip install -q --no-index --no-deps -e .
fi
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "gpu_check.sh: no Python at $PY (give --wheels or --venv)" >&2; exit 2; }
LEFT=$(( LIMIT_S - ($(date +%s) - START) ))
[ "$LEFT" -gt 30 ] || { echo "gpu_check.sh: the install took the whole time limit" >&2; exit 124; }

if [ "$DRY" = 1 ]; then
  export DS_ACCELERATOR=cpu
  ARGS=(--device cpu --size tiny --prompts 2 --n 2 --max-new-tokens 8)
else
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  ARGS=(--device cuda)
fi
echo "gpu_check.sh: $PY, ${LEFT}s left" >&2
exec timeout --signal=TERM --kill-after=15 "$LEFT" "$PY" -m benchmarks.gpu_check "${ARGS[@]}" "${EXTRA[@]}"
