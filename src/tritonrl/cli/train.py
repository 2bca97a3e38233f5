"""`tritonrl train sft|grpo|best-of-n`: resolve preset + YAML + flags into a RunConfig, then call the library.

Precedence: the preset, then the YAML recipe (`--config`, sections extensions/train/lora), then flags. Heavy imports
(torch, transformers, TRL) happen only after parsing, and not at all with `--dry-run`, which prints the resolved
configuration and what each extension does on this device. `tritonrl train tiny-model --out DIR` writes the random
tiny model that plumbing runs train (`train/tiny.py`). Exit codes: 0 success, 2 usage or infrastructure error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from tritonrl.cli.common import EXIT_ERROR, EXIT_OK  # noqa: E402
from tritonrl.errors import TritonRLError

COMMANDS = ("sft", "grpo", "best-of-n", "tiny-model")

# flag dest -> TrainSettings field
_FLAG_FIELDS = {
    "model": "model", "out": "output_dir", "suite": "suite", "steps": "steps", "lr": "learning_rate",
    "device": "device", "workers": "workers", "num_generations": "num_generations",
    "max_completion_length": "max_completion_length", "rounds": "rounds", "n": "n", "k": "k",
    "fusion_dir": "fusion_dir", "pairs": "pairs", "use_vllm": "use_vllm", "seed": "seed", "batch_size": "batch_size",
    "temperature": "temperature", "grad_accum": "grad_accum", "max_length": "max_length",
    "logging_steps": "logging_steps", "rollouts": "rollouts",
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from tritonrl.train.config import PRESETS

    p = argparse.ArgumentParser(prog="tritonrl train", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=COMMANDS, help="sft: LoRA SFT on verified solutions; grpo: GRPO on verified "
                                                      "rewards; best-of-n: expert iteration; tiny-model: write a "
                                                      "random tiny model to --out (plumbing runs)")  # fmt: skip
    p.add_argument("--preset", choices=sorted(PRESETS), help="extension preset (default: the YAML's, else baseline)")
    p.add_argument("--config", help="YAML recipe with extensions:/train:/lora: sections")
    p.add_argument("--model", help="local model directory")
    p.add_argument("--suite", help="task suite: builtin, kernelbench:PATH[:1,2] or a folder of task files")
    p.add_argument("--out", help="output directory")
    p.add_argument("--steps", type=int, help="optimizer steps, i.e. max steps (per round for best-of-n)")
    p.add_argument("--lr", type=float, help="learning rate (default 2e-4 SFT / best-of-n, 1e-5 GRPO)")
    p.add_argument("--batch-size", type=int, help="per-device batch (GRPO: completions, a multiple of the group)")
    p.add_argument("--device", help="verifier device: auto, cpu, cuda or cuda:N (the trainer uses the GPU when "
                                     "there is one, whatever this says)")  # fmt: skip
    p.add_argument("--workers", type=int, help="parallel verifier processes")
    p.add_argument("--num-generations", type=int, help="GRPO group size")
    p.add_argument("--max-completion-length", type=int, help="tokens generated per completion")
    p.add_argument("--max-length", type=int, help="SFT and best-of-n fine-tuning: longest prompt + completion")
    p.add_argument("--temperature", type=float, help="sampling temperature (GRPO and best-of-n)")
    p.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    p.add_argument("--logging-steps", type=int, help="log every N steps")
    p.add_argument("--rollouts", choices=["policy", "scripted"],
                   help="GRPO / best-of-n completions: sample the policy (default), or answer each group with the "
                        "bundled solution and a wrong answer (real verdicts; a plumbing check)")  # fmt: skip
    p.add_argument("--rounds", type=int, help="best-of-n rounds")
    p.add_argument("--n", type=int, help="best-of-n: samples per task")
    p.add_argument("--k", type=int, help="best-of-n: correct samples kept per task")
    p.add_argument("--fusion-dir", help="folder of generated L2 fusion tasks (used with fusion_data)")
    p.add_argument("--pairs", help="SFT: JSONL file/folder of verified {task_id, completion} pairs")
    p.add_argument("--use-vllm", action="store_true", default=None, help="GRPO: generate with vLLM if installed")
    p.add_argument("--seed", type=int)
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    p.add_argument("--log-level", default="INFO")
    return p


def resolve(args: argparse.Namespace):  # noqa: ANN201 (RunConfig)
    """The RunConfig of parsed arguments: preset, then YAML, then flags that were given."""
    from tritonrl.train.config import load_config

    cfg = load_config(args.config, args.preset)
    given = {field: getattr(args, flag) for flag, field in _FLAG_FIELDS.items() if getattr(args, flag) is not None}
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **given))


def _device(value: str) -> str:
    if value != "auto":
        return value
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _run(command: str, cfg, device: str) -> str:  # noqa: ANN001
    from tritonrl.data.suites import resolve_suite
    from tritonrl.train.data import load_pairs, select_tasks
    from tritonrl.verify.config import VerifyConfig

    t = cfg.train
    if not t.model:
        raise TritonRLError("no model: pass --model PATH or set train.model in the YAML.")
    tasks = select_tasks(resolve_suite(t.suite), fusion_data=cfg.ext.fusion_data, fusion_dir=t.fusion_dir)
    verify_base = VerifyConfig.for_rewards(device)
    out = Path(t.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps({"command": command, **cfg.to_dict()}, indent=1))
    if command == "sft":
        from tritonrl.train.sft import run_sft

        pairs = load_pairs(t.pairs) if t.pairs else None
        return run_sft(t.model, tasks, out, steps=t.steps, lr=t.learning_rate or 2e-4, lora=cfg.lora,
                       batch_size=t.batch_size or 2, grad_accum=t.grad_accum, max_length=t.max_length, pairs=pairs,
                       seed=t.seed, logging_steps=t.logging_steps)  # fmt: skip
    scripted = t.rollouts == "scripted"
    if command == "grpo":
        from tritonrl.train.grpo import run_grpo
        from tritonrl.train.scripted import scripted_rollout

        return run_grpo(
            t.model, tasks, out, cfg.ext, steps=t.steps, num_generations=t.num_generations,
            max_completion_length=t.max_completion_length, verify_cfg=verify_base, lr=t.learning_rate or 1e-5,
            lora=cfg.lora, batch_size=t.batch_size,
            grad_accum=t.grad_accum, temperature=t.temperature, use_vllm=t.use_vllm, seed=t.seed, workers=t.workers,
            logging_steps=t.logging_steps, rollout_func=scripted_rollout(tasks) if scripted else None,
        ).out_dir  # fmt: skip
    from tritonrl.generate import SamplingConfig
    from tritonrl.train.best_of_n import run_best_of_n
    from tritonrl.train.scripted import ScriptedGenerator

    sampling = SamplingConfig(max_new_tokens=t.max_completion_length, temperature=t.temperature, seed=t.seed)
    return run_best_of_n(
        t.model, tasks, out, cfg.ext, rounds=t.rounds, n=t.n, k=t.k, steps=t.steps, lr=t.learning_rate or 2e-4,
        lora=cfg.lora, batch_size=t.batch_size or 2, max_length=t.max_length, verify_cfg=verify_base, sampling=sampling,
        workers=t.workers, seed=t.seed, generator_factory=(lambda _: ScriptedGenerator(tasks)) if scripted else None,
    ).out_dir  # fmt: skip


def _tiny_model(args: argparse.Namespace) -> int:
    if not args.out:
        print("error: tiny-model needs --out DIR (where the tokenizer and model are written).", file=sys.stderr)
        return EXIT_ERROR
    try:
        from tritonrl.train.tiny import build_tiny_model

        path = build_tiny_model(args.out, seed=args.seed or 0)
    except ImportError as exc:
        print(f"error: {exc}. The tiny model needs the train extra: pip install 'tritonrl[train]'.", file=sys.stderr)
        return EXIT_ERROR
    print(f"done: {path}")
    return EXIT_OK


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of `tritonrl train ...` (argv without the leading "train")."""
    args = build_parser().parse_args(argv)
    from tritonrl.log import setup_logging
    from tritonrl.train.config import describe

    setup_logging(args.log_level)
    if args.command == "tiny-model":
        return _tiny_model(args)
    try:
        cfg = resolve(args)
        device = _device(cfg.train.device)
        notes = describe(cfg.ext, device)
        if args.dry_run:
            resolved = {"command": args.command, "device": device, **cfg.to_dict(), "extension_notes": notes}
            print(json.dumps(resolved, indent=1))
            return EXIT_OK
        print(f"preset {cfg.preset} on {device}: " + "; ".join(notes))
        out = _run(args.command, cfg, device)
    except ImportError as exc:
        print(f"error: {exc}. Training needs the train extra: pip install 'tritonrl[train]'.", file=sys.stderr)
        return EXIT_ERROR
    except (TritonRLError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception:  # noqa: BLE001 - a bug of ours: traceback logged, exit 2
        logging.getLogger("tritonrl").exception("internal error")
        return EXIT_ERROR
    print(f"done: {out}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(train_main())
