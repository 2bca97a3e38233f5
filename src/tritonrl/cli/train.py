"""`tritonrl train sft|grpo|best-of-n`: resolve preset + YAML + flags into a RunConfig, then call the library.

Precedence: the preset, then the YAML recipe (`--config`, sections extensions/train/lora), then flags. Heavy imports
(torch, transformers, TRL) happen only after parsing, and not at all with `--dry-run`, which prints the resolved
configuration and what each extension does on this device. `tritonrl train init-model --size tiny|small|base --out
DIR` writes a random model (~5M/~30M/~100M parameters) with a tokenizer trained on Triton tasks
(`train/init_model.py`); `tritonrl train tiny-model --out DIR` the 0.1M one plumbing runs train (`train/tiny.py`).
`--prompt zero-shot|one-shot` sets the prompt style of the run. Exit codes: 0 success, 2 usage or infrastructure
error.
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

COMMANDS = ("sft", "grpo", "best-of-n", "init-model", "tiny-model")

# flag dest -> TrainSettings field
_FLAG_FIELDS = {
    "model": "model", "out": "output_dir", "suite": "suite", "steps": "steps", "lr": "learning_rate",
    "device": "device", "workers": "workers", "num_generations": "num_generations",
    "max_completion_length": "max_completion_length", "steps_per_generation": "steps_per_generation",
    "rounds": "rounds", "n": "n", "k": "k",
    "fusion_dir": "fusion_dir", "pairs": "pairs", "use_vllm": "use_vllm", "seed": "seed", "batch_size": "batch_size",
    "temperature": "temperature", "grad_accum": "grad_accum", "max_length": "max_length",
    "logging_steps": "logging_steps", "rollouts": "rollouts", "loss_type": "loss_type",
    "scale_rewards": "scale_rewards", "mask_truncated_completions": "mask_truncated_completions",
    "reward_weights": "reward_weights", "merge": "merge", "merge_input_adapter": "merge_input_adapter",
    "save_steps": "save_steps", "resume": "resume", "report_to": "report_to",
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    from tritonrl.tasks.prompts import PromptStyle
    from tritonrl.train.config import PRESETS
    from tritonrl.train.init_model import DEFAULT_CORPUS, SIZES

    p = argparse.ArgumentParser(prog="tritonrl train", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=COMMANDS, help="sft: LoRA SFT on verified solutions; grpo: GRPO on verified "
                                                      "rewards; best-of-n: expert iteration; init-model: write a "
                                                      "random --size model and its tokenizer to --out; tiny-model: "
                                                      "write a random 0.1M model to --out (plumbing runs)")  # fmt: skip
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="extension preset (default: the YAML's, else hardened: rewards verified as `tritonrl eval` "
                        "verifies; any other preset prints the defences it turns off)")  # fmt: skip
    p.add_argument("--config", help="YAML recipe with extensions:/train:/lora: sections")
    p.add_argument("--model", help="local model folder: a full model, or a LoRA adapter (a `train` output) whose "
                                    "base it names; the adapter is trained further")  # fmt: skip
    p.add_argument("--suite", help="task suite: builtin, kernelbench:PATH[:1,2] or a folder of task files")
    p.add_argument("--out", help="output directory")
    p.add_argument("--steps", type=int, help="optimizer steps, i.e. max steps (per round for best-of-n)")
    p.add_argument("--lr", type=float, help="learning rate (default 2e-4 SFT / best-of-n, 1e-5 GRPO; with --no-lora "
                                             "2e-5 / 1e-6)")  # fmt: skip
    p.add_argument("--no-lora", action="store_true", help="train every weight instead of a LoRA adapter (small models; "
                                                          "YAML lora.enabled: false)")  # fmt: skip
    p.add_argument("--load-in-4bit", action="store_true",
                   help="QLoRA: load the base in 4-bit NF4 and train a LoRA adapter on it (needs bitsandbytes and "
                        "a CUDA GPU; YAML lora.load_in_4bit: true)")  # fmt: skip
    p.add_argument("--merge", action="store_true", default=None,
                   help="sft / grpo with LoRA: also write the merged full model to OUT/merged")  # fmt: skip
    p.add_argument("--merge-input-adapter", action="store_true", default=None,
                   help="when --model is a LoRA adapter: merge it into its base and train a fresh adapter instead of "
                        "continuing it")  # fmt: skip
    p.add_argument("--batch-size", type=int, help="per-device batch (GRPO: completions, a multiple of the group)")
    p.add_argument("--device", help="verifier device: auto, cpu, cuda or cuda:N (the trainer uses the GPU when "
                                     "there is one, whatever this says)")  # fmt: skip
    p.add_argument("--workers", type=int, help="parallel verifier processes")
    p.add_argument("--num-generations", type=int, help="GRPO group size")
    p.add_argument("--max-completion-length", type=int, help="tokens generated per completion")
    p.add_argument("--steps-per-generation", type=int,
                   help="GRPO: optimizer steps that share one generation round (one generate call and one verifier "
                        "round for N steps' completions; default 1)")  # fmt: skip
    p.add_argument("--loss-type", help="GRPO loss: grpo, dr_grpo, dapo (default), bnpo, cispo, sapo, luspo, vespo")
    p.add_argument("--scale-rewards", help="GRPO advantage scaling: group (default), batch or none")
    p.add_argument("--mask-truncated-completions", action="store_true", default=None,
                   help="GRPO: leave completions cut at --max-completion-length out of the loss")  # fmt: skip
    p.add_argument("--reward-weights", type=float, nargs="+",
                   help="GRPO: one weight per reward function (kernel_<kind>, then kernel_speed if timed)")  # fmt: skip
    p.add_argument("--max-length", type=int, help="SFT and best-of-n fine-tuning: longest prompt + completion")
    p.add_argument("--temperature", type=float, help="sampling temperature (GRPO and best-of-n)")
    p.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    p.add_argument("--logging-steps", type=int, help="log every N steps")
    p.add_argument("--save-steps", type=int, help="sft / grpo: a checkpoint every N steps in OUT/checkpoint-N")
    p.add_argument("--resume", action="store_true", default=None,
                   help="sft / grpo: continue from the newest OUT/checkpoint-N")  # fmt: skip
    p.add_argument("--report-to", choices=["none", "tensorboard"], help="tensorboard: event files under OUT/runs")
    p.add_argument("--rollouts", choices=["policy", "scripted"],
                   help="GRPO / best-of-n completions: sample the policy (default), or answer each group with the "
                        "bundled solution and a wrong answer (real verdicts; a plumbing check)")  # fmt: skip
    p.add_argument("--rounds", type=int, help="best-of-n rounds")
    p.add_argument("--n", type=int, help="best-of-n: samples per task")
    p.add_argument("--k", type=int, help="best-of-n: correct samples kept per task")
    p.add_argument("--fusion-dir", help="folder of generated L2 fusion tasks (used with fusion_data)")
    p.add_argument("--pairs", help="SFT: JSONL file/folder of verified {task_id, completion} pairs (default: the "
                                    "suite's bundled solutions, or a fusion:N suite's generated ones)")  # fmt: skip
    p.add_argument("--prompt", choices=[s.value for s in PromptStyle],
                   help="prompt style: one-shot (default: with a worked example) or zero-shot")  # fmt: skip
    p.add_argument("--size", choices=list(SIZES), default="tiny", help="init-model: ~5M, ~30M or ~100M parameters")
    p.add_argument("--corpus", action="append",
                   help="init-model: tokenizer corpus, a suite spec (prompts and solutions) or a text file/folder; "
                        f"repeat for several (default: {' '.join(DEFAULT_CORPUS)})")  # fmt: skip
    p.add_argument("--vocab-size", type=int, help="init-model: BPE vocabulary target (default: the size's)")
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
    lora = dataclasses.replace(cfg.lora, enabled=False) if args.no_lora else cfg.lora
    if args.load_in_4bit:
        lora = dataclasses.replace(lora, load_in_4bit=True)  # __post_init__ refuses it with --no-lora
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **given), lora=lora)


def _device(value: str) -> str:
    if value != "auto":
        return value
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _run(command: str, cfg, device: str) -> str:  # noqa: ANN001
    from tritonrl.data.suites import load_suite
    from tritonrl.models import resolve_model
    from tritonrl.tasks.prompts import prompt_style
    from tritonrl.train.data import load_pairs, select_tasks, suite_pairs
    from tritonrl.train.model_io import RunOutputs
    from tritonrl.verify.config import VerifyConfig

    t = cfg.train
    if not t.model:
        raise TritonRLError("no model: pass --model PATH or set train.model in the YAML.")
    resolve_model(t.model)  # a wrong folder (or an adapter whose base is gone) fails before any work
    merged_dir = Path(t.output_dir) / "merged" if t.merge else None
    RunOutputs.of(t)  # tensorboard installed if asked for: checked before any work
    suite = load_suite(t.suite)
    tasks = select_tasks(suite.tasks, fusion_data=cfg.ext.fusion_data, fusion_dir=t.fusion_dir)
    verify_base = VerifyConfig.for_rewards(device)
    out = Path(t.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_config = {"command": command, "prompt": prompt_style().value, **cfg.to_dict()}
    (out / "run_config.json").write_text(json.dumps(run_config, indent=1))
    if command == "sft":
        from tritonrl.train.sft import run_sft

        pairs = load_pairs(t.pairs) if t.pairs else suite_pairs(suite)  # bundled or generated solutions
        return run_sft(t.model, tasks, out, t, lora=cfg.lora, pairs=pairs, merged_dir=merged_dir)
    scripted = t.rollouts == "scripted"
    if command == "grpo":
        from tritonrl.train.grpo import run_grpo
        from tritonrl.train.scripted import scripted_rollout

        rollout = scripted_rollout(tasks) if scripted else None
        result = run_grpo(t.model, tasks, out, cfg.ext, t, lora=cfg.lora, verify_cfg=verify_base,
                          rollout_func=rollout, merged_dir=merged_dir)  # fmt: skip
        return result.out_dir
    from tritonrl.generate import SamplingConfig
    from tritonrl.train.best_of_n import run_best_of_n
    from tritonrl.train.scripted import ScriptedGenerator

    sampling = SamplingConfig(max_new_tokens=t.max_completion_length, temperature=t.temperature, seed=t.seed)
    factory = (lambda _: ScriptedGenerator(tasks)) if scripted else None
    result = run_best_of_n(t.model, tasks, out, cfg.ext, t, lora=cfg.lora, verify_cfg=verify_base, sampling=sampling,
                           generator_factory=factory)  # fmt: skip
    return f"{result.out_dir} (model: {result.model_path})"


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


def _init_model(args: argparse.Namespace) -> int:
    if not args.out:
        print("error: init-model needs --out DIR (where the tokenizer and model are written).", file=sys.stderr)
        return EXIT_ERROR
    try:
        from tritonrl.train.init_model import DEFAULT_CORPUS, InitModelConfig, init_model

        cfg = InitModelConfig(size=args.size, out=args.out, corpus=tuple(args.corpus or DEFAULT_CORPUS),
                              vocab_size=args.vocab_size, seed=args.seed or 0)  # fmt: skip
        result = init_model(cfg)
    except ImportError as exc:
        print(f"error: {exc}. init-model needs the train extra: pip install 'tritonrl[train]'.", file=sys.stderr)
        return EXIT_ERROR
    except (TritonRLError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{args.size}: {result.n_params:,} parameters, {result.vocab_size} tokens (BPE on {result.corpus_docs} "
          f"texts, {result.corpus_chars / 1e6:.1f}M characters), {result.seconds:.1f}s")  # fmt: skip
    print(f"done: {result.out_dir}")
    return EXIT_OK


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of `tritonrl train ...` (argv without the leading "train")."""
    args = build_parser().parse_args(argv)
    from tritonrl.log import setup_logging
    from tritonrl.tasks.prompts import set_default_style
    from tritonrl.train.config import describe, weakened_defences
    from tritonrl.verify.config import VerifyConfig

    setup_logging(args.log_level)
    if args.command == "tiny-model":
        return _tiny_model(args)
    if args.command == "init-model":
        return _init_model(args)
    try:
        if args.prompt:  # before anything builds a prompt: datasets, scripted rollouts and generators all follow it
            set_default_style(args.prompt)
        cfg = resolve(args)
        device = _device(cfg.train.device)
        notes = describe(cfg.ext, device)
        off = weakened_defences(cfg.ext, VerifyConfig(device=device)) if args.command != "sft" else []
        if args.dry_run:
            resolved = {"command": args.command, "device": device, **cfg.to_dict(), "extension_notes": notes,
                        "defences_off": off}  # fmt: skip
            print(json.dumps(resolved, indent=1))
            return EXIT_OK
        print(f"preset {cfg.preset} on {device}: " + "; ".join(notes))
        if off:
            message = (f"preset {cfg.preset} turns off verifier defences that `tritonrl eval` keeps: {'; '.join(off)}. "
                       "Its rewards accept kernels the evaluation rejects (e.g. an identity relu); the default preset "
                       "hardened keeps them all.")  # fmt: skip
            print(f"warning: {message}")  # run_grpo / run_best_of_n also log which defences are off
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
