"""Sample k completions per task from a model, with the shared prompt module (`tasks/prompts.py`).

Backends: a local Hugging Face model (transformers `generate` on a folder `tritonrl.models` loads: a full model or a
LoRA adapter with its base; offline), vLLM when installed, and any OpenAI-compatible HTTP endpoint (a served model,
or a teacher for distillation). Each returns raw completions; extraction and verification happen later, so a
completion is stored exactly as the model wrote it. `sample_tasks` batches several prompts per backend call where the
backend can (`generate_batch`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from tritonrl.errors import ConfigError
from tritonrl.models import load_causal_lm, load_tokenizer, resolve_model
from tritonrl.tasks.prompts import build_messages, render_prompt
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = dataclasses.field(default=4096, metadata={"help": "Completion length limit (tokens)."})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = dataclasses.field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    seed: int | None = dataclasses.field(default=None, metadata={"help": "Sampling seed (None: random)."})
    prompts_per_call: int = dataclasses.field(
        default=8,
        metadata={"help": "Local HF backend: prompts per `generate` call, each with k samples (so one call holds "
                          "prompts_per_call * k sequences; lower it when memory runs out)."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens}: must be >= 1.")
        if self.prompts_per_call < 1:
            raise ConfigError(f"prompts_per_call={self.prompts_per_call}: must be >= 1 (1 = one prompt per call).")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"temperature={self.temperature}, top_p={self.top_p}: need temperature >= 0 and "
                              "0 < top_p <= 1.")  # fmt: skip


class Generator(Protocol):
    name: str

    def generate(self, task: Task, k: int) -> list[str]: ...


class HFGenerator:
    """transformers `generate` on a local model folder (a LoRA adapter is merged into its base; never downloads)."""

    def __init__(self, model_path: str, sampling: SamplingConfig, *, device: str | None = None) -> None:
        import torch

        source = resolve_model(model_path)
        self.name = f"hf:{model_path}"
        self.sampling = sampling
        self.tokenizer = load_tokenizer(source, padding_side="left")  # left: batched prompts end where outputs start
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = load_causal_lm(source)
        self.model.to(self.device).eval()
        # (tokens generated, ended by EOS) per answer of the last generate_batch call, in its order: how long the
        # answers were, and which ran into max_new_tokens (decoded text re-encodes to other counts)
        self.last_lengths: list[tuple[int, bool]] = []

    @property
    def prompts_per_call(self) -> int:
        return self.sampling.prompts_per_call

    def generate(self, task: Task, k: int) -> list[str]:
        return self.generate_batch([task], k)[0]

    def generate_batch(self, tasks: Sequence[Task], k: int) -> list[list[str]]:
        """k completions for each task, from one `generate` call over all the prompts (left-padded)."""
        import torch

        prompts = [render_prompt(task, self.tokenizer) for task in tasks]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        if self.sampling.seed is not None:
            torch.manual_seed(self.sampling.seed)
        s = self.sampling
        with torch.no_grad():
            out = self.model.generate(
                **enc, do_sample=s.temperature > 0, temperature=s.temperature or None, top_p=s.top_p,
                max_new_tokens=s.max_new_tokens, num_return_sequences=k, pad_token_id=self.tokenizer.pad_token_id,
            )  # fmt: skip
        new = out[:, enc["input_ids"].shape[1] :]
        self.last_lengths = [_length(row.tolist(), self.tokenizer.eos_token_id) for row in new]
        texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        return [texts[i * k : (i + 1) * k] for i in range(len(tasks))]  # generate returns each prompt's k in a row


def _length(ids: list[int], eos: int | None) -> tuple[int, bool]:
    """Tokens of one generated row up to and including its first EOS (the rest is padding), and whether it ended."""
    if eos is not None and eos in ids:
        return ids.index(eos) + 1, True
    return len(ids), False


class VLLMGenerator:
    """vLLM offline engine on a local model directory (needs the optional vllm package and a GPU)."""

    def __init__(self, model_path: str, sampling: SamplingConfig) -> None:
        if resolve_model(model_path).is_adapter:
            raise ConfigError(f"--gen-backend vllm: {model_path!r} is a LoRA adapter; give vLLM a full model "
                              "folder (`tritonrl train sft|grpo --merge` writes OUT/merged) or use --gen-backend "
                              "hf.")  # fmt: skip
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise ConfigError("--gen-backend vllm needs the vllm package; install it or use hf.") from exc
        self.name = f"vllm:{model_path}"
        self.llm = LLM(model=model_path, seed=sampling.seed or 0)
        self._params = SamplingParams
        self.sampling = sampling

    def generate(self, task: Task, k: int) -> list[str]:
        return self.generate_batch([task], k)[0]

    def generate_batch(self, tasks: Sequence[Task], k: int) -> list[list[str]]:
        """k completions for each task; vLLM schedules all the conversations of one call together."""
        s = self.sampling
        params = self._params(n=k, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_new_tokens)
        results = self.llm.chat([build_messages(task) for task in tasks], params)
        return [[o.text for o in r.outputs] for r in results]


class OpenAIGenerator:
    """Any OpenAI-compatible chat endpoint (`base_url` like http://host:8000/v1). The API key comes from
    $OPENAI_API_KEY (local servers accept any value)."""

    def __init__(self, base_url: str, model: str, sampling: SamplingConfig) -> None:
        try:
            import openai
        except ImportError as exc:
            raise ConfigError("--endpoint needs the openai package (pip install 'tritonrl[eval]').") from exc
        self.name = f"openai:{base_url}#{model}"
        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"))
        self.model = model
        self.sampling = sampling

    def generate(self, task: Task, k: int) -> list[str]:
        s = self.sampling
        out: list[str] = []
        while len(out) < k:  # some servers ignore n > 1: ask again until we have k
            resp = self.client.chat.completions.create(
                model=self.model, messages=build_messages(task), n=k - len(out), temperature=s.temperature,
                top_p=s.top_p, max_tokens=s.max_new_tokens, seed=s.seed,
            )  # fmt: skip
            got = [c.message.content or "" for c in resp.choices]
            if not got:
                raise ConfigError(f"endpoint {self.name} returned no choices for {task.task_id}")
            out += got
        return out[:k]


def sample_tasks(generator: Generator, tasks: Sequence[Task], k: int) -> Iterator[tuple[Task, list[str]]]:
    """(task, its k completions) for every task, in order. A generator with `generate_batch` gets
    `prompts_per_call` tasks per call (all of them when it does not say); others are called once per task."""
    batch = getattr(generator, "generate_batch", None)
    if batch is None:
        for task in tasks:
            yield task, generator.generate(task, k)
        return
    size = max(1, getattr(generator, "prompts_per_call", len(tasks)))
    for start in range(0, len(tasks), size):
        chunk = list(tasks[start : start + size])
        yield from zip(chunk, batch(chunk, k), strict=True)


def make_generator(
    *, model: str | None, backend: str, endpoint: str | None, endpoint_model: str | None, sampling: SamplingConfig
) -> Generator:
    if endpoint:
        if not endpoint_model:
            raise ConfigError("--endpoint needs --endpoint-model (the model name the server serves).")
        return OpenAIGenerator(endpoint, endpoint_model, sampling)
    if not model:
        raise ConfigError("give --candidates DIR, --model PATH or --endpoint URL.")
    factories: dict[str, Callable[[], Generator]] = {
        "hf": lambda: HFGenerator(model, sampling),
        "vllm": lambda: VLLMGenerator(model, sampling),
    }
    if backend not in factories:
        raise ConfigError(f"--gen-backend {backend!r}: choose one of {sorted(factories)}.")
    return factories[backend]()
