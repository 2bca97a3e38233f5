"""train/init_model.py: a random Qwen3 with a byte-level BPE trained on Triton tasks loads, round-trips code,
renders chat prompts and generates; the size table meets its advertised parameter counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from tritonrl.cli.train import train_main  # noqa: E402
from tritonrl.errors import ConfigError  # noqa: E402
from tritonrl.tasks.loader import builtin_task  # noqa: E402
from tritonrl.tasks.prompts import build_messages, render_prompt  # noqa: E402
from tritonrl.train.init_model import SIZES, InitModelConfig, ModelShape, corpus_texts, init_model  # noqa: E402

# A quick corpus for the tests (the default one has 2000 fusion tasks and takes ~10 s).
CORPUS = ("builtin", "fusion:20:0")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("init_tiny")
    return init_model(InitModelConfig(size="tiny", out=str(out), corpus=CORPUS)), out


def test_tiny_loads_with_the_auto_classes(tiny):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, out = tiny
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert model.config.model_type == "qwen3" and model.num_parameters() == result.n_params
    assert 4e6 < result.n_params < 6e6  # ~5M, whatever the corpus gives the vocabulary
    assert len(tok) == result.vocab_size == model.config.vocab_size
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert model.generation_config.eos_token_id == tok.eos_token_id
    record = json.loads((out / "init_model.json").read_text())
    assert record["size"] == "tiny" and record["corpus"] == list(CORPUS) and record["n_params"] == result.n_params


def test_triton_code_round_trips_losslessly(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny[1], local_files_only=True)
    code = Path(builtin_task("softmax").solution_path).read_text()
    odd = "\tx  =  tl.load(p + offs ,mask=m)  # é, 中文, emoji 🙂\r\n\n   \n"  # tabs, runs of spaces, CRLF, non-ASCII
    for text in (code, odd, " leading space", "trailing space "):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok(code, add_special_tokens=False)["input_ids"]) < len(code) / 2  # BPE merged the code's words


def test_chat_template_renders_offline_and_prompts_prefix_their_answers(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny[1], local_files_only=True)
    relu = builtin_task("relu")
    prompt = render_prompt(relu, tok)
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    full = tok.apply_chat_template([*build_messages(relu), {"role": "assistant", "content": "Plan: x"}], tokenize=False)
    assert full.startswith(prompt)  # completion-only loss needs the prompt to be a prefix of prompt + answer
    ids = tok.apply_chat_template(build_messages(relu), add_generation_prompt=True)
    assert tok.decode(ids["input_ids"] if isinstance(ids, dict) else ids) == prompt


def test_generate_runs(tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tiny[1]
    tok = AutoTokenizer.from_pretrained(out, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    prompt = render_prompt(builtin_task("relu"), tok, style="zero-shot")
    enc = tok(prompt, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(0)
    generated = model.generate(**enc, max_new_tokens=8, do_sample=True, pad_token_id=tok.pad_token_id)
    assert enc["input_ids"].shape[1] < generated.shape[1] <= enc["input_ids"].shape[1] + 8
    assert isinstance(tok.decode(generated[0, enc["input_ids"].shape[1] :]), str)


@pytest.mark.parametrize(("size", "nominal"), [("tiny", 5e6), ("small", 30e6), ("base", 100e6)])
def test_sizes_meet_their_parameter_counts(size, nominal):
    """Counted on the meta device (no memory) at 4,197 tokens, the default corpus's vocabulary."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    s = SIZES[size]
    cfg = Qwen3Config(vocab_size=min(s.vocab_size, 4197), hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
                      intermediate_size=s.intermediate_size, num_attention_heads=s.num_heads,
                      num_key_value_heads=s.num_kv_heads, head_dim=s.hidden_size // s.num_heads,
                      tie_word_embeddings=True)  # fmt: skip
    with torch.device("meta"):
        n = Qwen3ForCausalLM(cfg).num_parameters()
    assert abs(n / nominal - 1) < 0.1


def test_corpus_takes_files_folders_and_suites(tmp_path):
    (tmp_path / "a.py").write_text("def kernel(): pass\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# notes\n")
    (tmp_path / "c.bin").write_text("skipped")
    texts = corpus_texts([str(tmp_path / "a.py"), str(tmp_path / "sub"), "builtin"])
    assert texts[1:3] == ["def kernel(): pass\n", "# notes\n"]
    relu = builtin_task("relu")
    assert any(relu.source.strip() in t and "Example." not in t for t in texts)  # zero-shot prompts
    assert any(Path(relu.solution_path).read_text().strip() in t and t.startswith("Plan: ") for t in texts)


def test_bad_config_says_value_rule_and_fix():
    with pytest.raises(ConfigError, match=r"size='huge'.*\['base', 'small', 'tiny'\].*--size tiny"):
        InitModelConfig(size="huge", out="x")
    with pytest.raises(ConfigError, match=r"vocab_size=100: must exceed 259.*--vocab-size"):
        InitModelConfig(size="tiny", out="x", vocab_size=100)
    with pytest.raises(ConfigError, match="num_kv_heads"):
        ModelShape(hidden_size=64, num_layers=1, num_heads=4, num_kv_heads=3, intermediate_size=64, vocab_size=300)


def test_cli_init_model(tmp_path, capsys):
    out = tmp_path / "m"
    argv = ["init-model", "--size", "tiny", "--corpus", "builtin", "--vocab-size", "600", "--seed", "1"]
    assert train_main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tiny: ") and " parameters, 600 tokens" in printed and f"done: {out}" in printed
    assert json.loads((out / "init_model.json").read_text())["seed"] == 1
    assert train_main(["init-model", "--size", "tiny"]) == 2 and "--out" in capsys.readouterr().err
    assert train_main(["init-model", "--out", str(out), "--vocab-size", "10"]) == 2
    assert "vocab_size=10" in capsys.readouterr().err
