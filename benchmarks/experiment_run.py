"""One run folder of the training experiment: its flags (`parser`), the data split, the held-out tasks, the init
model and `results.json` (`Run`), and the SFT and GRPO phases with their callbacks (held-out NLL every N steps, a
wall-time budget). Shared by `train_experiment.py` and `train_ablation.py`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiment_eval import _free_gpu, answer_tokens, eval_config, held_out_eval, verifiable

log = logging.getLogger("train_experiment")

SEED_EXTENSIONS = ("multi_input", "staged_reward", "curriculum", "calibrated_timing")
# The experiment's GRPO arm: the hardened verifier's correctness layers with three seed extensions on; calibrated
# timing (the speed reward) off, since a 30M model's first correct kernels are the question, not their speed, and
# without timing its rewards do not depend on what else runs on the GPU (a control may train beside it, each then
# slower: so both are given steps, not seconds, there). It is the ablation grid's multi_input+staged_reward+curriculum
# configuration: train_ablation.py reuses it.
GRPO_ARM = {"multi_input": True, "staged_reward": True, "curriculum": True, "calibrated_timing": False}


def grpo_arm(reward: str) -> dict[str, bool]:
    """The GRPO arm with `--grpo-reward`: `staged` is GRPO_ARM; `binary` turns staged_reward off, so only a correct
    completion earns reward (section 7e: with 1 correct in 64, the staged reward's spread came from "loads" vs
    "runs with wrong values" only, and pushed towards the latter)."""
    return {**GRPO_ARM, "staged_reward": reward == "staged"}


# The flags a GRPO run's result depends on: two runs compare (or one stands for the other) only when these agree.
GRPO_FLAGS = (
    "tasks", "fusion_seed", "size", "sft_steps", "sft_lr", "grpo_steps", "grpo_budget_s", "grpo_lr", "grpo_batch",
    "num_generations", "steps_per_generation", "max_new_tokens", "grpo_temperature", "grpo_reward", "temperature",
    "k", "seed",
)  # fmt: skip


class HeldOutLoss:
    """A TrainerCallback that logs the completion-only NLL on held-out (prompt, completion) rows every `every` steps:
    the periodic held-out evaluation of the SFT phases (cheap: one forward per row, no generation)."""

    def __new__(cls, rows: list[dict[str, Any]], tokenizer: Any, every: int, sink: list[dict[str, float]]):  # noqa: ANN204
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            def on_step_end(self, args, state, control, model=None, **kw):  # noqa: ANN001, ANN201
                if state.global_step % every == 0 and model is not None:
                    sink.append({"step": state.global_step, "held_out_nll": _nll(model, tokenizer, rows)})
                    log.info("step %d held-out NLL %.4f", state.global_step, sink[-1]["held_out_nll"])

        return _Callback()


def _nll(model: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> float:
    import torch

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
            p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            c_ids = tokenizer(row["completion"][0]["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
            ids = torch.tensor([p_ids + c_ids], device=model.device)
            labels = ids.clone()
            labels[:, : len(p_ids)] = -100
            loss = model(input_ids=ids, labels=labels).loss
            total += float(loss) * len(c_ids)
            count += len(c_ids)
    model.train(was_training)
    return total / max(count, 1)


class StopAfter:
    """A TrainerCallback that ends training after `seconds` of it (the last step finishes; the model is saved as
    usual): a phase's wall-time budget, so one device call holds every phase. It stops only after a step that ends
    a generation round (`every`: GRPO's steps_per_generation), since the other steps of a round cost ~nothing."""

    def __new__(cls, seconds: float, every: int = 1):  # noqa: ANN204
        from transformers import TrainerCallback

        class _Callback(TrainerCallback):
            t0 = 0.0

            def on_train_begin(self, args, state, control, **kw):  # noqa: ANN001, ANN201
                self.t0 = time.monotonic()

            def on_step_end(self, args, state, control, **kw):  # noqa: ANN001, ANN201
                if seconds and time.monotonic() - self.t0 > seconds and state.global_step % every == 0:
                    log.info("stopping after step %d: the phase's %.0f s are spent", state.global_step, seconds)
                    control.should_training_stop = True

        return _Callback()


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="run folder (models, logs, results.json)")
    ap.add_argument("--device", default="cuda", help="verifier device")
    ap.add_argument("--size", default="small", help="init-model size: tiny (~5M), small (~30M), base (~100M)")
    ap.add_argument("--tasks", type=int, default=600, help="fusion tasks generated (op-pair split 80/10/10)")
    ap.add_argument("--fusion-seed", type=int, default=0)
    ap.add_argument("--eval-tasks", type=int, default=32, help="held-out test tasks evaluated")
    ap.add_argument(
        "--train-eval-tasks",
        type=int,
        default=0,
        help="also score this many in-distribution tasks (which ones: --held-in)",
    )
    ap.add_argument(
        "--held-in",
        choices=("train", "fresh"),
        default="train",
        help="what --train-eval-tasks scores. train: training tasks themselves (did the model learn what it saw?); "
        "fresh: new fusion tasks (generator seed + 1) whose every adjacent op pair occurs in training, none a training "
        "task: unseen instances of seen compositions, the score that can move where the held-out split asks for a "
        "composition the model never saw (docs/benchmarks.md 7d)",
    )
    ap.add_argument("--eval-timeout-s", type=float, default=30.0, help="verifier timeout per sampled kernel")
    ap.add_argument("--skip-untrained", action="store_true", help="do not score the random model (its floor)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--sft-steps", type=int, default=400)
    ap.add_argument("--sft-lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--grpo-steps", type=int, default=6)
    ap.add_argument("--grpo-budget-s", type=float, default=0, help="end GRPO after this many seconds (0: steps only)")
    ap.add_argument("--grpo-lr", type=float, default=1e-5)
    ap.add_argument("--num-generations", type=int, default=4)
    ap.add_argument("--grpo-batch", type=int, default=16, help="completions per GRPO step")
    ap.add_argument("--steps-per-generation", type=int, default=1,
                    help="GRPO steps served by one generate call and one verifier round")  # fmt: skip
    ap.add_argument("--max-new-tokens", type=int, default=2048)
    ap.add_argument("--max-length", type=int, default=4096)
    ap.add_argument("--temperature", type=float, default=0.7,
                    help="evaluation's sampling temperature for pass@k (0: greedy, with --k 1)")  # fmt: skip
    ap.add_argument("--grpo-temperature", type=float, default=0.7, help="GRPO's sampling temperature")
    ap.add_argument(
        "--grpo-reward",
        choices=("staged", "binary"),
        default="staged",
        help="GRPO's reward: staged (partial credit per verifier stage reached) or binary (1 only for a correct "
        "kernel); the experiment's other extensions stay on (`experiment_run.grpo_arm`)",
    )
    ap.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=True,
                    help="also score greedy decoding (one answer per task) in every evaluation")  # fmt: skip
    ap.add_argument("--gen-batch", type=int, default=64, help="prompts per generate call in evaluation")
    ap.add_argument("--eval-every", type=int, default=50, help="held-out NLL every N SFT steps")
    ap.add_argument("--save-steps", type=int, default=200, help="checkpoints every N steps (SFT and GRPO)")
    ap.add_argument("--jobs", type=int, default=12, help="verifier workers")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes for a CPU plumbing run")
    ap.add_argument("--budget-s", type=float, default=0, help="skip the phases that start after this many seconds")
    ap.add_argument("--resume", action="store_true",
                    help="keep the phases --out/results.json already holds (their models still in --out) and run the "
                         "rest: an experiment spread over several calls on one machine")  # fmt: skip
    ap.add_argument("--replot", help="a results.json: print its table and draw its plot, run nothing")
    return ap


SMOKE = dict(size="tiny", tasks=40, eval_tasks=2, k=2, sft_steps=2, grpo_steps=1, batch_size=2, num_generations=2,
             grpo_batch=2, max_new_tokens=32, max_length=2048, eval_every=1, jobs=2, save_steps=1)  # fmt: skip


def comparable(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Why two results (results.json or ablation.json contents) do not compare: a different held-out task list, or
    the GRPO_FLAGS that differ between their runs; empty when their rows may share one table."""
    why = [] if a["phases"].get("data", {}).get("held_out") == b["phases"].get("data", {}).get("held_out") else [
        "held-out tasks"]  # fmt: skip
    return why + [f for f in GRPO_FLAGS if a.get("args", {}).get(f) != b.get("args", {}).get(f)]


def setup_logging() -> None:
    """The experiment scripts' log lines: time, logger, message, on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)


def setup_args(args: argparse.Namespace) -> None:
    """Logging, the smoke sizes, and the training device."""
    import torch

    setup_logging()
    args.train_device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
        if args.temperature == 0:
            args.k = 1
    if args.temperature == 0 and args.k != 1:
        raise SystemExit(f"--temperature 0 is greedy decoding, one answer per task: --k must be 1 (got --k {args.k})")


def score_columns(args: dict[str, Any], evals: list[dict[str, Any]]) -> list[str]:
    """The score columns of both tables: pass@1 (greedy when the run's --temperature is 0), pass@k when k > 1, and
    greedy pass@1 when some evaluation scored it beside sampling."""
    k = args["k"]
    cols = ["pass@1 (greedy)" if args.get("temperature", 1) == 0 else "pass@1"] + ([f"pass@{k}"] if k > 1 else [])
    return cols + (["greedy pass@1"] if any(e.get("greedy") for e in evals) else [])


def score_cells(e: dict[str, Any], columns: list[str]) -> list[str]:
    """One evaluation's cells under `score_columns`: `0.250 [0.000, 0.500]`, a score and its 95% interval."""

    def cell(score: dict[str, Any], key: str) -> str:
        lo, hi = score[f"{key}_ci"]
        return f"{score[key]:.3f} [{lo:.3f}, {hi:.3f}]"

    cells = []
    for c in columns:
        if c == "greedy pass@1":
            cells.append(cell(e["greedy"], "pass@1") if e.get("greedy") else "-")
        else:
            cells.append(cell(e, c.split()[0]))  # "pass@1 (greedy)" and "pass@k" name their key first
    return cells


def outcomes_text(outcomes: dict[str, int]) -> str:
    """`3 parse/syntax_error, 1 passed`: the verdicts of an evaluation, most frequent first."""
    return ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items(), key=lambda x: -x[1]))


def replot(path: str, table: Callable[[dict], str], plot: Callable[[dict, Path], str]) -> int:
    """`--replot FILE`: print the table of a saved results file and draw its plot next to it; runs nothing."""
    results = json.loads(Path(path).read_text())
    print(table(results))
    print(plot(results, Path(path).with_suffix(".png")))
    return 0


def write_joined(ap: argparse.ArgumentParser, args: argparse.Namespace, name: str, join: Callable[[list], dict],
                 table: Callable[[dict], str], plot: Callable[[dict, Path], str]) -> int:  # fmt: skip
    """`--join FILES`: the parts' results joined (`join`) into --out/`name`, then its table and plot; runs nothing."""
    if not args.out:
        ap.error(f"--join needs --out (the folder the joined {name} goes to)")
    path = Path(args.out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(join([json.loads(Path(p).read_text()) for p in args.join]), indent=1))
    return replot(str(path), table, plot)


def fusion_suite(tasks: int, fusion_seed: int, seed: int) -> Any:
    """A run's tasks: `fusion:TASKS:FUSION_SEED` split by op pair under `seed` (train, val, test), as `Run` scores them
    and `fusion_recall.py` rebuilds them from a results file's args."""
    from tritonrl.data.splits import SplitConfig
    from tritonrl.data.suites import load_suite

    return load_suite(f"fusion:{tasks}:{fusion_seed}", splits=SplitConfig(by="op-pair", seed=seed))


def seen_compositions(args: argparse.Namespace, train: Any) -> list:
    """Fresh fusion tasks (the generator at --fusion-seed + 1) whose every adjacent op pair occurs in a training
    task, without training tasks or their sources: new instances (sizes, dtypes, constants) of seen compositions."""
    from tritonrl.data.splits import op_pairs
    from tritonrl.data.suites import load_suite

    seen = set().union(*(op_pairs(e.op_chain()) for e in train.entries))
    ids, sources = {e.task_id for e in train.entries}, {e.task.source for e in train.entries}
    fresh = load_suite(f"fusion:{args.tasks}:{args.fusion_seed + 1}")  # its own split is never read
    return [e.task for e in fresh.entries
            if e.task_id not in ids and e.task.source not in sources and op_pairs(e.op_chain()) <= seen]  # fmt: skip


class Run:
    """One run folder: the data split, the held-out tasks, the init model and `results.json`, rewritten after every
    phase so a run cut by a time limit keeps what it measured. Shared by this script and `train_ablation.py`."""

    def __init__(self, args: argparse.Namespace, out: Path, results_name: str = "results.json") -> None:
        from tritonrl.tasks.prompts import set_default_style
        from tritonrl.train.data import suite_pairs

        self.args, self.out, self.t_start = args, out, time.monotonic()
        self.path = out / results_name
        out.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {"args": dict(vars(args)), "phases": {}, "eval": []}
        set_default_style("zero-shot")  # the model learns the format from SFT: no one-shot example in its context
        suite = fusion_suite(args.tasks, args.fusion_seed, args.seed)
        self.train, test = suite.only("train"), suite.only("test")
        self.pairs = suite_pairs(self.train)
        self.held_out, excluded = verifiable(test.tasks, args.eval_tasks, eval_config(args))
        self.test_pairs = suite_pairs(test)
        pool = self.train.tasks if args.held_in == "train" else seen_compositions(args, self.train)
        self.held_in, _ = verifiable(pool, args.train_eval_tasks, eval_config(args))
        self.results["phases"]["data"] = {"train": len(self.train.entries), "test": len(test.entries),
                                          "eval": len(self.held_out), "excluded": excluded,
                                          "held_out": [t.task_id for t in self.held_out],
                                          "held_in": [t.task_id for t in self.held_in]}  # fmt: skip
        self.report_to = _report_to()
        self.prior = self._prior() if getattr(args, "resume", False) else None

    def _prior(self) -> dict[str, Any] | None:
        """The earlier results of this folder, when they scored the same tasks (else the run would mix task sets)."""
        if not self.path.exists():
            return None
        prior = json.loads(self.path.read_text())
        data = prior.get("phases", {}).get("data", {})
        if (data.get("held_out"), data.get("held_in")) != (self.results["phases"]["data"]["held_out"],
                                                            self.results["phases"]["data"]["held_in"]):  # fmt: skip
            raise SystemExit(f"--resume: {self.path} scored other tasks (other data flags?); resume with the flags "
                             "of that run, or give a new --out")  # fmt: skip
        return prior

    def done(self, phase: str, folder: Path | None = None) -> bool:
        """With --resume: `phase` finished in an earlier call (its model still in `folder`); its record is kept."""
        record = (self.prior or {}).get("phases", {}).get(phase)
        if not record or "error" in record or "skipped" in record:
            return False
        if folder is not None and not (folder / "config.json").exists():
            return False
        self.results["phases"][phase] = record
        log.info("--resume: %s kept from the earlier call", phase)
        self.save()
        return True

    def save(self) -> None:
        self.path.write_text(json.dumps(self.results, indent=1))

    def in_budget(self, phase: str) -> bool:
        if self.args.budget_s and time.monotonic() - self.t_start > self.args.budget_s:
            self.results["phases"][phase] = {"skipped": f"started after --budget-s {self.args.budget_s:.0f}"}
            self.save()
            return False
        return True

    def evaluate(self, name: str, model_dir: Path) -> dict[str, Any]:
        """Held-out pass@k of `model_dir` (a row named `name`), and on training tasks when --train-eval-tasks."""
        earlier = [e for e in (self.prior or {}).get("eval", []) if e["model"] == name]
        earlier_train = [e for e in (self.prior or {}).get("eval_train", []) if e["model"] == name]
        if earlier and (earlier_train or not self.held_in):
            self.results["eval"].append(earlier[0])
            if earlier_train:
                self.results.setdefault("eval_train", []).append(earlier_train[0])
            self.save()
            return earlier[0]
        slug = "".join(c if c.isalnum() or c in "+-" else "_" for c in name)
        row = held_out_eval(name, str(model_dir), self.held_out, self.args, self.out / f"samples-{slug}.jsonl")
        self.results["eval"].append(row)
        self.save()
        if self.held_in:
            train_row = held_out_eval(name, str(model_dir), self.held_in, self.args,
                                      self.out / f"samples-{slug}-train.jsonl")  # fmt: skip
            self.results.setdefault("eval_train", []).append(train_row)
            self.save()
        return row

    def init_model(self) -> None:
        from tritonrl.train.init_model import InitModelConfig, init_model

        corpus = self.out / "corpus.txt"
        corpus.write_text("\n\n".join(t.source for t in self.train.tasks) + "\n\n"
                          + "\n\n".join(c for _, c in self.pairs))  # fmt: skip
        cfg = InitModelConfig(size=self.args.size, out=str(self.out / "init"), corpus=(str(corpus),),
                              seed=self.args.seed)  # fmt: skip
        model = init_model(cfg)
        splits = [("train", self.train.tasks, self.pairs), ("test", self.held_out, self.test_pairs)]
        tokens = answer_tokens(str(self.out / "init"), self.args, splits)
        self.results["phases"]["init"] = {"parameters": model.n_params, "vocab": model.vocab_size,
                                          "seconds": round(model.seconds, 1), "answer_tokens": tokens}  # fmt: skip
        self.save()

    def sft(self, phase: str, start: Path, steps: int, lr: float, seed: int) -> float:
        """SFT from `start` into out/`phase` (full parameters), held-out NLL every --eval-every steps; seconds."""
        from tritonrl.models import load_tokenizer
        from tritonrl.train.data import sft_rows
        from tritonrl.train.settings import LoraSettings, TrainSettings
        from tritonrl.train.sft import run_sft

        a = self.args
        tok = load_tokenizer(str(start))
        nll_rows = sft_rows(self.held_out[:8], tok, pairs=self.test_pairs[:8])
        curve: list[dict[str, float]] = []
        t0 = time.monotonic()
        settings = TrainSettings(
            steps=steps,
            learning_rate=lr,
            batch_size=a.batch_size,
            max_length=a.max_length,
            seed=seed,
            logging_steps=10,
            save_steps=a.save_steps,
            report_to=self.report_to,
        )
        run_sft(
            str(start),
            self.train.tasks,
            self.out / phase,
            settings,
            lora=LoraSettings(enabled=False),
            pairs=self.pairs,
            callbacks=[HeldOutLoss(nll_rows, tok, a.eval_every, curve)],
        )
        seconds = time.monotonic() - t0
        self.results["phases"][phase] = {"seconds": round(seconds, 1), "steps": steps, "held_out_nll": curve}
        _free_gpu()
        self.save()
        return seconds

    def grpo(self, phase: str, start: Path, ext: Any) -> tuple[bool, float]:
        """GRPO from `start` into out/`phase` with the extensions `ext`; (trained, seconds). A failure is recorded
        (the next phases still run, so the run keeps what it can)."""
        from tritonrl.train.grpo import run_grpo
        from tritonrl.train.settings import LoraSettings, TrainSettings
        from tritonrl.verify.config import VerifyConfig

        a = self.args
        t0 = time.monotonic()
        try:
            settings = TrainSettings(
                steps=a.grpo_steps,
                learning_rate=a.grpo_lr,
                batch_size=a.grpo_batch,
                num_generations=a.num_generations,
                steps_per_generation=a.steps_per_generation,
                max_completion_length=a.max_new_tokens,
                temperature=a.grpo_temperature,
                seed=a.seed,
                workers=a.jobs,
                save_steps=a.save_steps,
                report_to=self.report_to,
            )
            result = run_grpo(
                str(start),
                self.train.tasks,
                self.out / phase,
                ext,
                settings,
                lora=LoraSettings(enabled=False),
                verify_cfg=VerifyConfig.for_rewards(a.device),
                callbacks=[StopAfter(a.grpo_budget_s, a.steps_per_generation)],
            )
        except Exception as exc:  # noqa: BLE001 - recorded in results.json; the run goes on
            log.exception("GRPO %s failed", phase)
            self.results["phases"][phase] = {"error": repr(exc)[:2000]}
            self.save()
            return False, time.monotonic() - t0
        seconds = time.monotonic() - t0
        # TRL logs the rewards on the steps that generated (one per `steps_per_generation`): one entry per round
        rounds = [h for h in result.log_history if "reward" in h]

        def series(key: str) -> list[float]:
            return [round(h[key], 4) for h in rounds if key in h]

        self.results["phases"][phase] = {"seconds": round(seconds, 1),
                                         "steps": max((h.get("step", 0) for h in result.log_history), default=0),
                                         "mean_reward_per_round": series("reward"),
                                         "correct_frac_per_round": series("kernel/correct_frac"),
                                         "compiled_frac_per_round": series("kernel/compiled_frac"),
                                         "verify_s_per_round": series("kernel/verify_s"),
                                         "completion_tokens_per_round": series("completions/mean_length"),
                                         "clipped_frac_per_round": series("completions/clipped_ratio"),
                                         "extensions": list(ext.enabled)}  # fmt: skip
        _free_gpu()
        self.save()
        return True, seconds


def _report_to() -> str:
    """TensorBoard logs for the phases when the package is there, else none (a device image may lack it)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return "none"
    return "tensorboard"
