"""eval/generate.py: the OpenAI-compatible endpoint client against a loopback server, and transformers `generate`
on a tiny random local model; both feed `evaluate` end to end."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tritonrl.errors import ConfigError
from tritonrl.eval.pipeline import evaluate
from tritonrl.generate import HFGenerator, OpenAIGenerator, SamplingConfig, VLLMGenerator, make_generator, sample_tasks
from tritonrl.tasks.loader import builtin_task
from tritonrl.verify.config import VerifyConfig

RELU = builtin_task("relu")
ANSWER = "Plan: one program per 256 elements.\n```python\n" + Path(RELU.solution_path).read_text() + "```\n"


class _ChatHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self):  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _ChatHandler.requests.append(body)
        n = 1  # like servers that ignore n > 1: the client must ask again
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": i, "finish_reason": "stop", "message": {"role": "assistant",
                              "content": ANSWER}} for i in range(n)],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}  # fmt: skip
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture()
def endpoint():
    pytest.importorskip("openai")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _ChatHandler.requests.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_endpoint_returns_k_completions_with_the_shared_prompt(endpoint):
    gen = OpenAIGenerator(endpoint, "served-model", SamplingConfig(max_new_tokens=64, temperature=0.5))
    out = gen.generate(RELU, 2)
    assert out == [ANSWER, ANSWER]
    first = _ChatHandler.requests[0]
    assert first["model"] == "served-model" and first["max_tokens"] == 64
    assert "class Model" in first["messages"][-1]["content"] and "ModelNew" in first["messages"][-1]["content"]


def test_evaluate_samples_from_an_endpoint(endpoint, tmp_path):
    gen = make_generator(model=None, backend="hf", endpoint=endpoint, endpoint_model="m",
                         sampling=SamplingConfig())  # fmt: skip
    result = evaluate(tmp_path / "run", [RELU], VerifyConfig(), generator=gen, k=2)
    assert result.summary.overall.n_samples == 2 and result.summary.overall.correct == 1.0


def test_endpoint_without_model_name_is_a_config_error():
    with pytest.raises(ConfigError, match="endpoint-model"):
        make_generator(model=None, backend="hf", endpoint="http://127.0.0.1:1/v1", endpoint_model=None,
                       sampling=SamplingConfig())  # fmt: skip


def test_hf_generator_on_a_tiny_local_model(tiny_model_dir, tmp_path):
    gen = HFGenerator(tiny_model_dir, SamplingConfig(max_new_tokens=12, seed=1), device="cpu")
    out = gen.generate(RELU, 3)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    # counted on the generated ids: random weights rarely end, so most answers run to the limit
    assert len(gen.last_lengths) == 3 and all(0 < n <= 12 for n, _ in gen.last_lengths)
    assert all(n == 12 for n, ended in gen.last_lengths if not ended)
    result = evaluate(tmp_path / "run", [RELU], VerifyConfig(), generator=gen, k=3)
    assert result.summary.overall.n_samples == 3  # random weights write no code: rejected, but recorded


def test_hf_generator_refuses_a_hub_name():
    pytest.importorskip("transformers")
    with pytest.raises(ConfigError, match="not a local model directory"):
        HFGenerator("Qwen/Qwen3-8B", SamplingConfig())


def test_hf_generator_samples_several_prompts_per_generate_call(tiny_model_dir):
    gen = HFGenerator(tiny_model_dir, SamplingConfig(max_new_tokens=6, seed=1, prompts_per_call=2), device="cpu")
    calls = []
    real = gen.model.generate

    def counting(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(**kwargs)

    gen.model.generate = counting
    tasks = [RELU, builtin_task("vector_add"), builtin_task("softmax")]
    out = dict((t.task_id, texts) for t, texts in sample_tasks(gen, tasks, 3))
    assert calls == [2, 1]  # two prompts (left-padded) in the first call, the last one alone
    assert list(out) == ["relu", "vector_add", "softmax"] and all(len(v) == 3 for v in out.values())


def test_sample_tasks_calls_a_plain_generator_once_per_task():
    class Plain:
        name = "plain"

        def __init__(self):
            self.calls = []

        def generate(self, task, k):
            self.calls.append(task.task_id)
            return [task.task_id] * k

    gen = Plain()
    assert [texts for _, texts in sample_tasks(gen, [RELU, RELU], 2)] == [["relu", "relu"]] * 2
    assert gen.calls == ["relu", "relu"]


def test_vllm_backend_asks_for_a_merged_model_instead_of_an_adapter(tiny_model_dir, tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": tiny_model_dir}))
    with pytest.raises(ConfigError, match="OUT/merged"):
        VLLMGenerator(str(tmp_path), SamplingConfig())
