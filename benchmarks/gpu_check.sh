#!/usr/bin/env bash
# The prepared one-GPU check (issue 23; docs/gpu-recipe.md, "The one-GPU check"). The lent machine
# has Python 3.12 with torch, transformers, numpy, pillow, accelerate and peft, no Ray, DeepSpeed,
# vLLM or pydantic, and no network: the small wheels `make gpu-wheels` put in .cache/gpu-wheels
# (carried with the run) go into a scratch folder with pip --target, only those that Python lacks
# or has older, and benchmarks/gpu_check.py runs on that Python with PYTHONPATH=<scratch>:<repo>.
#
#   benchmarks/gpu_check.sh [--dry-run] [--wheels DIR] [--python PY] [--limit-s N] [-- gpu_check.py args]
#
#   --wheels DIR  the carried wheels (default .cache/gpu-wheels)
#   --python PY   the interpreter (default python3; with --dry-run, .venv/bin/python)
#   --limit-s N   seconds for the check itself, the install not counted (default and most: 360)
#   --dry-run     list what a device run carries (the working tree, the wheels, the total; fails
#                 over 64 MiB), then the CPU path (fp32, gloo, tiny models): what CI runs
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }
WHEELS=.cache/gpu-wheels PY="" DRY=0 LIMIT_S=360 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift 2 ;;
    --python) PY="${2:?--python needs an interpreter}"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --limit-s) LIMIT_S="${2:?--limit-s needs seconds}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; EXTRA=("$@"); break ;;
    *) echo "gpu_check.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$LIMIT_S" in ''|*[!0-9]*) echo "gpu_check.sh: --limit-s takes whole seconds" >&2; exit 2 ;; esac
[ "$LIMIT_S" -le 360 ] || { echo "gpu_check.sh: --limit-s is at most 360 (the check's budget)" >&2; exit 2; }
if [ -z "$PY" ]; then if [ "$DRY" = 1 ]; then PY=.venv/bin/python; else PY=python3; fi; fi
command -v "$PY" >/dev/null || { echo "gpu_check.sh: no Python at $PY (give --python)" >&2; exit 2; }

export HF_HUB_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
# The dry run shares the CPU op `make install` builds for DeepSpeed; the GPU builds none (torch's AdamW).
if [ "$DRY" = 1 ]; then EXT=torch_extensions; else EXT=torch_extensions_gpu; fi
export TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-$PWD/.cache/$EXT}"
if [ "$DRY" = 1 ]; then
  "$PY" benchmarks/gpu_carry.py list "$WHEELS"  # exits 3 over the limit
elif [ -z "$(ls "$WHEELS"/*.whl 2>/dev/null)" ]; then
  echo "gpu_check.sh: no wheels in $WHEELS: run \`make gpu-wheels\` and carry $WHEELS" >&2; exit 2
fi

# The carried wheels this Python lacks (or has older) go into a scratch folder ahead of its own.
NEED_LINES=$("$PY" benchmarks/gpu_carry.py missing "$WHEELS")
NEED=()
[ -z "$NEED_LINES" ] || mapfile -t NEED <<< "$NEED_LINES"
if [ "${#NEED[@]}" -gt 0 ]; then
  SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/vrft-gpu-site.XXXXXX")
  trap 'rm -rf "$SCRATCH"' EXIT
  echo "gpu_check.sh: installing ${#NEED[@]} wheels into $SCRATCH: $(for w in "${NEED[@]}"; do basename "$w"; done | tr '\n' ' ')" >&2
  "$PY" benchmarks/gpu_carry.py install "$SCRATCH" "${NEED[@]}"
  export PYTHONPATH="$SCRATCH:$PWD"
else
  echo "gpu_check.sh: nothing to install: $PY has every carried package" >&2
  export PYTHONPATH="$PWD"
fi

if [ "$DRY" = 1 ]; then
  export DS_ACCELERATOR=cpu
  ARGS=(--device cpu --prompts 2 --n 2 --max-new-tokens 8)
else
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  ARGS=(--device cuda)
fi
echo "gpu_check.sh: $PY ($("$PY" -c 'import sys, torch, transformers; print(sys.version.split()[0], "torch", torch.__version__, "transformers", transformers.__version__)')), ${LIMIT_S}s" >&2
# The Python side keeps to the limit itself (its calls' timeouts); this bound is the backstop. Not
# exec: the EXIT trap removes the scratch folder.
timeout --signal=TERM --kill-after=15 $((LIMIT_S + 20)) "$PY" -m benchmarks.gpu_check "${ARGS[@]}" \
  --limit-s "$LIMIT_S" "${EXTRA[@]}"
