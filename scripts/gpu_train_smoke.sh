#!/usr/bin/env bash
# GPU smoke test of `tritonrl train` through the CLI, in one device call (< 6 min on an H100; no network needed).
#
# Builds a random tiny model (`tritonrl train tiny-model`), then on the built-in tasks with the verifier on DEVICE:
#   sft            LoRA SFT on the bundled solutions
#   grpo_policy    GRPO sampling the tiny model (it writes no kernel: zero rewards, no update; proves generation)
#   grpo_scripted  GRPO with --rollouts scripted (solution + wrong answer per group: real GPU verdicts, LoRA moves)
#   bon_policy     best-of-N sampling the tiny model (nothing correct to keep)
#   bon_scripted   best-of-N with --rollouts scripted (keeps the verified solutions, fine-tunes, merges)
# and prints one summary line per run (steps, rewards, LoRA B matrices moved), failing when a run did not train.
#
# Usage, from the repository root of a machine with torch (CUDA), transformers, peft and accelerate installed:
#   export PYTHONPATH=/tmp/site:$PWD/src      # trl and datasets (and their deps) unpacked in /tmp/site
#   bash scripts/gpu_train_smoke.sh [WORKDIR]
# Knobs (tests/train/test_train_smoke.py runs the same script on the CPU with DEVICE=cpu):
#   DEVICE (cuda) PRESET (all_extensions) STEPS (3) WORKERS (4) MAX_COMPLETION (48) PY (python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-all_extensions}
STEPS=${STEPS:-3}
WORKERS=${WORKERS:-4}
MAX_COMPLETION=${MAX_COMPLETION:-48}
WORK=${1:-$(mktemp -d "${TMPDIR:-/tmp}/tritonrl_smoke.XXXXXX")}
mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TRL_EXPERIMENTAL_SILENCE=1  # rollout_func is experimental in TRL
start=$SECONDS

"$PY" -c "import torch, transformers, peft, accelerate, trl, datasets, tritonrl" || {
  echo "missing packages: torch/transformers/peft/accelerate installed, trl/datasets on PYTHONPATH, $PWD/src too" >&2
  exit 2
}
if [[ $DEVICE == cuda* ]]; then
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
fi
echo "tritonrl train smoke: device=$DEVICE preset=$PRESET steps=$STEPS work=$WORK"

run() {  # run NAME ARGS...: one `tritonrl train` command, its output in $WORK/NAME.log
  local name=$1 t0=$SECONDS
  shift
  if ! "$PY" -m tritonrl.cli.main train "$@" --log-level WARNING >"$WORK/$name.log" 2>&1; then
    tail -n 40 "$WORK/$name.log" >&2
    echo "SMOKE FAILED: $name (log: $WORK/$name.log)" >&2
    exit 1
  fi
  echo "  $name: $((SECONDS - t0)) s"
}

MODEL=$WORK/model
COMMON=(--model "$MODEL" --suite builtin --device "$DEVICE" --workers "$WORKERS" --seed 0)
GEN=(--max-completion-length "$MAX_COMPLETION" --num-generations 2)
run tiny_model tiny-model --out "$MODEL"
run sft sft "${COMMON[@]}" --out "$WORK/sft" --steps "$STEPS" --lr 1e-2
run grpo_policy grpo --preset "$PRESET" "${COMMON[@]}" "${GEN[@]}" --out "$WORK/grpo_policy" --steps 2
run grpo_scripted grpo --preset "$PRESET" "${COMMON[@]}" "${GEN[@]}" --out "$WORK/grpo_scripted" --steps "$STEPS" \
  --lr 1e-2 --rollouts scripted
run bon_policy best-of-n --preset "$PRESET" "${COMMON[@]}" --max-completion-length "$MAX_COMPLETION" \
  --out "$WORK/bon_policy" --rounds 1 --n 2 --k 1 --steps 1
run bon_scripted best-of-n --preset "$PRESET" "${COMMON[@]}" --out "$WORK/bon_scripted" --rounds 1 --n 2 --k 1 \
  --steps "$STEPS" --lr 1e-2 --rollouts scripted

"$PY" scripts/train_smoke_summary.py "$WORK" --steps "$STEPS"
echo "smoke passed in $((SECONDS - start)) s (work dir: $WORK)"
