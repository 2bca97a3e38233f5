"""Summarise (and check) the runs of scripts/gpu_train_smoke.sh: steps run, rewards seen, LoRA weights moved.

`python3 scripts/train_smoke_summary.py WORKDIR [--steps N]` reads each run's train_log.json / best_of_n.json and
adapter, prints one line per run, and exits 1 when a run did not do what it must: every run reaches its step count,
and the runs that see a correct answer (sft, the scripted GRPO and best-of-N runs) move every LoRA B matrix off its
zero initialisation (B starts at 0, so a non-zero B proves an optimizer update). The policy runs of a random tiny
model see no correct kernel, so their zero rewards and unmoved weights are expected and only reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def lora_b_moved(adapter_dir: Path) -> tuple[int, int]:
    """(LoRA B matrices that are non-zero, all LoRA B matrices) of a saved PEFT adapter."""
    from safetensors.torch import load_file

    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    b = [w for name, w in weights.items() if "lora_B" in name]
    return sum(bool(w.abs().sum() > 0) for w in b), len(b)


def steps_run(history: list[dict]) -> int:
    return max((int(h.get("step", 0)) for h in history), default=0)


def rewards_seen(history: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for h in history:
        for key, value in h.items():
            if (key.startswith("rewards/") and key.endswith("/mean")) or key == "kernel/correct_frac":
                out.setdefault(key, []).append(round(float(value), 3))
    return out


def summarise(work: Path, steps: int) -> list[str]:
    """One line per run; raises AssertionError naming the first run that failed its check."""
    lines = []
    sft = json.loads((work / "sft" / "train_log.json").read_text())
    moved, total = lora_b_moved(work / "sft")
    lines.append(f"sft           steps={steps_run(sft['log_history'])} lora_B_moved={moved}/{total}")
    assert steps_run(sft["log_history"]) == steps and total and moved == total, f"sft: {lines[-1]}"
    for name, must_move in (("grpo_policy", False), ("grpo_scripted", True)):
        log = json.loads((work / name / "train_log.json").read_text())
        moved, total = lora_b_moved(work / name)
        n, rewards = steps_run(log["log_history"]), rewards_seen(log["log_history"])
        verify = log["verify"]
        lines.append(f"{name:<13} steps={n} lora_B_moved={moved}/{total} rewards={rewards} "
                     f"verifier={verify['device']} metamorphic={verify['metamorphic']}")  # fmt: skip
        assert n >= 1 and rewards, f"{name}: no steps or no rewards logged: {lines[-1]}"
        if must_move:
            assert n == steps and total and moved == total, f"{name}: LoRA did not move: {lines[-1]}"
            assert max(rewards.get("kernel/correct_frac", [0.0])) > 0, f"{name}: no correct completion: {lines[-1]}"
    for name, must_train in (("bon_policy", False), ("bon_scripted", True)):
        stats = json.loads((work / name / "best_of_n.json").read_text())
        (row,) = stats["rounds"]
        line = (f"{name:<13} samples={row['n_samples']} correct_frac={row['correct_frac']:.2f} "
                f"kept={row['n_kept']} trained={row['trained']}")  # fmt: skip
        if row["trained"]:
            sft_log = json.loads((work / name / "round_0" / "adapter" / "train_log.json").read_text())
            moved, total = lora_b_moved(work / name / "round_0" / "adapter")
            line += f" steps={steps_run(sft_log['log_history'])} lora_B_moved={moved}/{total}"
            assert moved == total and total, f"{name}: LoRA did not move: {line}"
        lines.append(line)
        assert row["n_samples"] > 0 and (row["trained"] or not must_train), f"{name}: {line}"
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("work", type=Path)
    p.add_argument("--steps", type=int, default=3, help="the step count the sft and scripted runs were given")
    args = p.parse_args(argv)
    try:
        lines = summarise(args.work, args.steps)
    except (AssertionError, FileNotFoundError, KeyError) as exc:
        print(f"SMOKE FAILED: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
