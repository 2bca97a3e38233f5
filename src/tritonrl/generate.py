"""Sample k completions per task from a model, with the shared prompt module (`train/prompts.py`).

Backends: a local Hugging Face model (transformers `generate`, local paths only, offline), vLLM when installed, and
any OpenAI-compatible HTTP endpoint (a served model, or a teacher for distillation). Each returns raw completions;
extraction and verification happen later, so a completion is stored exactly as the model wrote it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Protocol

from tritonrl.errors import ConfigError
from tritonrl.tasks.prompts import build_messages, render_prompt
from tritonrl.tasks.schema import Task

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = dataclasses.field(default=4096, metadata={"help": "Completion length limit (tokens)."})
    temperature: float = dataclasses.field(default=1.0, metadata={"help": "Sampling temperature."})
    top_p: float = dataclasses.field(default=0.95, metadata={"help": "Nucleus sampling mass."})
    seed: int | None = dataclasses.field(default=None, metadata={"help": "Sampling seed (None: random)."})

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens={self.max_new_tokens}: must be >= 1.")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ConfigError(f"temperature={self.temperature}, top_p={self.top_p}: need temperature >= 0 and "
                              "0 < top_p <= 1.")  # fmt: skip


class Generator(Protocol):
    name: str

    def generate(self, task: Task, k: int) -> list[str]: ...


class HFGenerator:
    """transformers `generate` on a local model directory (never downloads)."""

    def __init__(self, model_path: str, sampling: SamplingConfig, *, device: str | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not os.path.isdir(model_path):
            raise ConfigError(f"--model {model_path!r}: not a local directory; pass the path of a downloaded model.")
        self.name = f"hf:{model_path}"
        self.sampling = sampling
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, dtype="auto")
        self.model.to(self.device).eval()

    def generate(self, task: Task, k: int) -> list[str]:
        import torch

        prompt = render_prompt(task, self.tokenizer)
        enc = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        if self.sampling.seed is not None:
            torch.manual_seed(self.sampling.seed)
        s = self.sampling
        with torch.no_grad():
            out = self.model.generate(
                **enc, do_sample=s.temperature > 0, temperature=s.temperature or None, top_p=s.top_p,
                max_new_tokens=s.max_new_tokens, num_return_sequences=k,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )  # fmt: skip
        new = out[:, enc["input_ids"].shape[1] :]
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in new]


class VLLMGenerator:
    """vLLM offline engine on a local model directory (needs the optional vllm package and a GPU)."""

    def __init__(self, model_path: str, sampling: SamplingConfig) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise ConfigError("--gen-backend vllm needs the vllm package; install it or use hf.") from exc
        self.name = f"vllm:{model_path}"
        self.llm = LLM(model=model_path, seed=sampling.seed or 0)
        self._params = SamplingParams
        self.sampling = sampling

    def generate(self, task: Task, k: int) -> list[str]:
        s = self.sampling
        params = self._params(n=k, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_new_tokens)
        result = self.llm.chat(build_messages(task), params)
        return [o.text for o in result[0].outputs]


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
