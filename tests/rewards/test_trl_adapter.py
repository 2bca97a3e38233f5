"""The TRL reward functions, called exactly as GRPOTrainer._calculate_rewards calls them, over a REAL VerifierClient
(spawned pool, sandboxed worker, Triton interpreter) on the builtin relu task; and the client's cache.

One client serves the module: each distinct (task, completion) is verified once (~2-3 s each on the CPU)."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tritonrl.errors import ConfigError, TaskError
from tritonrl.rewards.client import VerifierClient
from tritonrl.rewards.reward import RewardConfig
from tritonrl.rewards.trl_adapter import completion_text, make_reward_funcs
from tritonrl.tasks.loader import BUILTIN_DIR, builtin_task

RELU = builtin_task("relu")
SOLUTION = Path(RELU.solution_path).read_text()
FALLBACK = (BUILTIN_DIR / "examples" / "relu" / "torch_fallback.py").read_text()  # torch.relu behind a decoy kernel
ANSWER = f"The kernel masks the tail block.\n```python\n{SOLUTION}```\n"  # an LLM-style answer: plan + fenced code


@dataclasses.dataclass
class FakeTrainerState:  # the one attribute of transformers.TrainerState the adapter reads
    global_step: int = 0


@pytest.fixture(scope="module")
def client():
    with VerifierClient({"relu": RELU}, workers=2) as c:
        yield c


class Logs:
    def __init__(self) -> None:
        self.metrics: list[tuple[str, float]] = []
        self.extra: list[tuple[str, list]] = []

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.append((name, value))

    def log_extra(self, column: str, values: list) -> None:
        self.extra.append((column, values))

    def metric(self, name: str) -> list[float]:
        return [v for n, v in self.metrics if n == name]


def call_like_trl(funcs, prompts, completions, logs: Logs, step: int = 0, **columns) -> list[list[float | None]]:
    """GRPOTrainer._calculate_rewards for async functions: keyword args, every dataset column, asyncio.gather."""
    kwargs = {
        "trainer_state": FakeTrainerState(step),
        "log_extra": logs.log_extra,
        "log_metric": logs.log_metric,
        **columns,
    }
    ids = [[1, 2, 3]] * len(completions)

    async def run():
        return await asyncio.gather(*(f(prompts=prompts, completions=completions, completion_ids=ids, **kwargs)
                                      for f in funcs))  # fmt: skip

    return asyncio.run(run())


def test_trl_recognises_the_functions_as_async_and_named(client: VerifierClient) -> None:
    from trl.trainer.utils import get_callable_name, is_async_callable

    funcs = make_reward_funcs(client, kinds=("correct", "speed", "staged", "speed_rank", "reward"))
    assert [get_callable_name(f) for f in funcs] == [
        "kernel_correct", "kernel_speed", "kernel_staged", "kernel_speed_rank", "kernel_binary",
    ]  # fmt: skip
    assert all(is_async_callable(f) for f in funcs)


def test_standard_format(client: VerifierClient) -> None:
    logs = Logs()
    correct, speed = call_like_trl(
        make_reward_funcs(client), ["Write relu."] * 2, [ANSWER, FALLBACK], logs, task_id=["relu", "relu"], level=[1, 1]
    )
    assert correct == [1.0, 0.0]
    assert speed == [None, 0.0]  # CPU: a correct kernel has no speed reward, an incorrect one has 0


def test_conversational_format(client: VerifierClient) -> None:
    prompts = [[{"role": "user", "content": "Write relu."}]] * 2
    completions = [[{"role": "assistant", "content": ANSWER}], [{"role": "assistant", "content": FALLBACK}]]
    logs = Logs()
    (staged,) = call_like_trl(make_reward_funcs(client, kinds=("staged",)), prompts, completions, logs,
                              task_id=["relu", "relu"])  # fmt: skip
    assert staged == [1.0, 0.3]  # provenance failure earns the load credit


def test_verdict_components_are_logged_once_per_batch(client: VerifierClient) -> None:
    logs = Logs()
    call_like_trl(make_reward_funcs(client, kinds=("correct", "speed", "staged")), ["p"] * 2, [ANSWER, FALLBACK],
                  logs, task_id=["relu", "relu"])  # fmt: skip
    assert logs.metric("kernel/correct_frac") == [0.5]
    assert logs.metric("kernel/compiled_frac") == [1.0]
    assert logs.metric("kernel/valid_frac") == [1.0]
    assert logs.metric("kernel/timed_frac") == [0.0]
    assert logs.metric("kernel/stage/done_frac") == [0.5]
    assert logs.metric("kernel/stage/provenance_frac") == [0.5]
    assert logs.metric("kernel/stage/parse_frac") == [0.0]
    (verify_s,) = logs.metric("kernel/verify_s")  # one batch, timed once (the other functions reuse its verdicts)
    assert verify_s > 0
    assert dict(logs.extra) == {"kernel_stage": ["done", "provenance"], "kernel_failure": ["", "torch_compute"]}
    assert len(logs.extra) == 2  # only the first function logs: TRL appends every call's columns


def test_speed_rank_is_none_for_untimed_correct_samples(client: VerifierClient) -> None:
    (ranks,) = call_like_trl(make_reward_funcs(client, kinds=("speed_rank",)), ["p"] * 2, [ANSWER, FALLBACK], Logs(),
                             task_id=["relu", "relu"])  # fmt: skip
    assert ranks == [None, 0.0]


def test_reward_kind_follows_the_beta_schedule(client: VerifierClient) -> None:
    cfg = RewardConfig(kind="mixed", beta_schedule="linear", beta_start=0.0, beta_end=0.5, beta_warmup_steps=10)
    funcs = make_reward_funcs(client, cfg, kinds=("reward",))
    logs = Logs()
    (at_start,) = call_like_trl(funcs, ["p"] * 2, [ANSWER, FALLBACK], logs, step=0, task_id=["relu", "relu"])
    (later,) = call_like_trl(funcs, ["p"] * 2, [ANSWER, FALLBACK], logs, step=5, task_id=["relu", "relu"])
    assert at_start == [1.0, 0.0]  # beta = 0: correctness only, no timing needed
    assert later == [None, 0.0]  # beta > 0 on the CPU: the speed term is undefined
    assert logs.metric("kernel/beta") == [0.0, 0.25]


def test_reward_functions_survive_a_pickle_round_trip(client: VerifierClient) -> None:
    """TRL's async GRPO pickles reward functions into its rollout process; the copies must still score."""
    import pickle

    from trl.trainer.utils import get_callable_name, is_async_callable

    funcs = pickle.loads(pickle.dumps(make_reward_funcs(client, kinds=("correct", "staged"))))
    try:
        assert [get_callable_name(f) for f in funcs] == ["kernel_correct", "kernel_staged"]
        assert all(is_async_callable(f) for f in funcs)
        assert funcs[0].client is funcs[1].client is not client  # one fresh client, shared as before
        logs = Logs()
        correct, staged = call_like_trl(funcs, ["p"] * 2, [ANSWER, FALLBACK], logs, task_id=["relu", "relu"])
        assert (correct, staged) == ([1.0, 0.0], [1.0, 0.3])
        assert logs.metric("kernel/correct_frac") == [0.5]
    finally:
        funcs[0].client.close()


def test_missing_task_id_column_is_an_error(client: VerifierClient) -> None:
    with pytest.raises(ValueError, match="task_id"):
        call_like_trl(make_reward_funcs(client), ["p"], [ANSWER], Logs())


def test_unknown_task_id_is_a_task_error(client: VerifierClient) -> None:
    with pytest.raises(TaskError, match="unknown task id 'softmax'"):
        call_like_trl(make_reward_funcs(client), ["p"], [ANSWER], Logs(), task_id=["softmax"])


@pytest.mark.parametrize("kinds", [(), ("fast",), ("correct", "correct")])
def test_bad_kinds_are_rejected(client: VerifierClient, kinds: tuple) -> None:
    with pytest.raises(ValueError, match="kinds"):
        make_reward_funcs(client, kinds=kinds)


def test_completion_text_formats() -> None:
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "y"}]) == "y"
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(parts) == "ab"


# --- the client -----------------------------------------------------------------------------------------------------


def test_cache_means_a_second_call_does_not_verify_again(client: VerifierClient) -> None:
    text = "I will not write code for this one."  # a fresh text, rejected at EXTRACT (cheap; caching is the same)
    before = client.n_submitted
    first = client.verdicts(["relu", "relu"], [text, text])  # duplicates within a call share one run
    assert client.n_submitted == before + 1
    cached_before = client.n_cached
    second = client.verdicts(["relu"], [text])
    assert client.n_submitted == before + 1 and client.n_cached == cached_before + 1
    assert first[0] == first[1] == second[0] and second[0].stage.value == "extract"


def test_text_that_cannot_be_utf8_encoded_is_still_a_verdict(client: VerifierClient) -> None:
    (v,) = client.verdicts(["relu"], ["\ud800 a lone surrogate, no code"])  # hashing must not raise
    assert v.stage.value == "extract"


def test_async_and_sync_share_the_cache(client: VerifierClient) -> None:
    client.verdicts(["relu"], [FALLBACK])
    before = client.n_submitted
    (v,) = asyncio.run(client.averdicts(["relu"], [FALLBACK]))
    assert client.n_submitted == before
    assert (v.stage.value, v.failure.value) == ("provenance", "torch_compute")


def test_client_validates_its_arguments() -> None:
    with pytest.raises(ConfigError, match="workers=0"):
        VerifierClient({}, workers=0)
    c = VerifierClient({"relu": RELU})
    with pytest.raises(ValueError, match="one task id per completion"):
        c.verdicts(["relu"], ["a", "b"])
    with pytest.raises(TaskError, match="already registered"):
        c.add_tasks([dataclasses.replace(RELU, source=RELU.source + "\n# edited\n")])
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.verdicts(["relu"], ["a"])


def test_the_calling_process_never_imports_the_verifier(tmp_path: Path) -> None:
    """The trainer side only submits: the funnel, references and torch stay in the pool's processes."""
    script = tmp_path / "trainer.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        from tritonrl.rewards.client import VerifierClient
        from tritonrl.rewards.trl_adapter import make_reward_funcs
        from tritonrl.tasks.loader import builtin_task

        if __name__ == "__main__":
            with VerifierClient({"relu": builtin_task("relu")}, workers=1) as client:
                make_reward_funcs(client)
                (v,) = client.verdicts(["relu"], ["no code"])  # verified in the pool: the funnel ran there
            loaded = [m for m in ("torch", "triton", "tritonrl.verify.funnel", "tritonrl.tasks.reference")
                      if m in sys.modules]
            print(v.stage.value, loaded)
    """)
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "extract []"
