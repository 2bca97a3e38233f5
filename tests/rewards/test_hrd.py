"""Hierarchical reward decomposition: the code span matches what extract_code takes, token roles from offsets (fake
and from a real tokenizer), and per-token advantages."""

from __future__ import annotations

import doctest

import pytest

from tritonrl.rewards import hrd as hrd_module
from tritonrl.rewards.hrd import hrd_token_advantages, split_plan_code, token_roles
from tritonrl.verify.extract import extract_code

CODE = "import triton\n\n\nclass ModelNew:\n    def forward(self, x):\n        return x"
PLAN = "I will launch one program per 1024-element block and mask the tail.\n"
FENCED = f"{PLAN}```python\n{CODE}\n```\nThis kernel is memory bound."


def code_of(text: str) -> str:
    start, end = split_plan_code(text)
    return text[start:end]


def test_span_of_a_fenced_block_is_its_body() -> None:
    assert code_of(FENCED) == CODE
    start, end = split_plan_code(FENCED)
    assert FENCED[:start].endswith("```python\n") and FENCED[end:].startswith("\n```")


def test_span_matches_extract_code() -> None:
    code, _ = extract_code(FENCED)
    assert code is not None and code.strip() == code_of(FENCED)


def test_span_skips_reasoning_that_repeats_the_code() -> None:
    text = f"<think>draft:\n```python\n{CODE}\n```\n</think>{FENCED}"
    start, _ = split_plan_code(text)
    assert start > text.index("</think>")
    assert code_of(text) == CODE


def test_span_after_a_template_opened_think_block() -> None:
    text = f"reasoning with the code\n{CODE}\n</think>\n{FENCED}"
    assert split_plan_code(text)[0] > text.index("</think>")


def test_span_of_the_block_defining_modelnew_when_several() -> None:
    test_block = "```python\nprint(ModelNew()(1))\n```\n"
    text = f"{FENCED}\nTry it:\n{test_block}"
    assert code_of(text) == CODE


def test_span_of_an_indented_fence() -> None:
    indented = "\n".join("   " + line if line else line for line in CODE.split("\n"))
    text = f"Steps:\n1. Answer:\n   ```python\n{indented}\n   ```\n"
    assert code_of(text) == indented.lstrip()


def test_span_with_crlf_line_ends_maps_to_original_offsets() -> None:
    text = FENCED.replace("\n", "\r\n")
    assert code_of(text) == CODE.replace("\n", "\r\n")


def test_span_after_a_byte_order_mark() -> None:
    text = f"\ufeff{CODE}\n"
    assert split_plan_code(text) == (1, 1 + len(CODE))


def test_span_of_a_whole_python_file() -> None:
    text = f"\n{CODE}\n\n"
    assert split_plan_code(text) == (1, 1 + len(CODE))


def test_span_of_an_unterminated_fence() -> None:
    text = f"{PLAN}```python\n{CODE}\n"
    assert code_of(text) == CODE


def test_no_code_means_all_plan() -> None:
    text = "I cannot write this kernel."
    assert split_plan_code(text) == (len(text), len(text))
    assert token_roles(text, [(0, 1), (1, 9)]) == [0, 0]


def test_token_roles_from_fake_offsets() -> None:
    start, end = split_plan_code(FENCED)
    offsets = [(0, start - 1), (start - 1, start + 6), (start + 6, end - 1), (end - 1, end + 4), (end + 4, len(FENCED))]
    assert token_roles(FENCED, offsets) == [0, 1, 1, 1, 0]  # partial overlap counts as code


def test_zero_width_tokens_are_plan() -> None:
    start, _ = split_plan_code(FENCED)
    assert token_roles(FENCED, [(0, 0), (start + 2, start + 2), (start, start + 1)]) == [0, 0, 1]


def test_token_roles_with_a_real_tokenizer(tiny_model_dir: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    enc = tok(FENCED, return_offsets_mapping=True, add_special_tokens=False)
    roles = token_roles(FENCED, enc["offset_mapping"])
    assert len(roles) == len(enc["input_ids"])
    code_text = "".join(FENCED[s:e] for (s, e), r in zip(enc["offset_mapping"], roles, strict=True) if r == 1)
    plan_text = "".join(FENCED[s:e] for (s, e), r in zip(enc["offset_mapping"], roles, strict=True) if r == 0)
    assert CODE in code_text
    assert "memory bound" in plan_text and "mask the tail" in plan_text
    first_code, last_code = roles.index(1), len(roles) - 1 - roles[::-1].index(1)
    assert all(roles[first_code : last_code + 1])  # plan, one contiguous run of code, plan


def test_hrd_advantages_split_by_role() -> None:
    assert hrd_token_advantages(0.8, 2.0, [1, 0, 1], alpha=0.5) == [0.8, 1.0, 0.8]
    assert hrd_token_advantages(0.8, 2.0, [1, 0], alpha=0.0) == [0.8, 0.0]
    assert hrd_token_advantages(0.8, 2.0, []) == []


def test_hrd_default_alpha_is_tritonrl_s() -> None:
    assert hrd_token_advantages(1.0, 1.0, [1, 0]) == [1.0, pytest.approx(0.1)]


def test_without_a_speed_reward_plan_tokens_get_the_correctness_advantage() -> None:
    # Every CPU run: no speed reward. A failing answer's reasoning is pushed down with its code, a passing one's up.
    assert hrd_token_advantages(-0.5, None, [0, 0, 1, 1, 0]) == [-0.5] * 5
    assert hrd_token_advantages(0.5, None, [0, 1]) == [0.5, 0.5]


def test_an_answer_without_code_is_penalised_on_every_token() -> None:
    # Group [pass, no code]: the no-code answer's correctness advantage is negative, and no token escapes it.
    assert hrd_token_advantages(-0.5, None, [0, 0, 0]) == [-0.6, -0.6, -0.6]
    assert hrd_token_advantages(-0.5, 2.0, [0, 0]) == [-0.6, -0.6]  # a speed reward does not rescue it either
    # A group where every answer lacks code has group advantage 0; the format penalty still applies.
    assert hrd_token_advantages(0.0, None, [0, 0], no_code_penalty=0.3) == [-0.3, -0.3]


def test_hrd_rejects_bad_roles_alpha_and_penalty() -> None:
    with pytest.raises(ValueError, match="roles"):
        hrd_token_advantages(1.0, 1.0, [0, 2])
    with pytest.raises(ValueError, match="alpha"):
        hrd_token_advantages(1.0, 1.0, [0], alpha=-0.1)
    with pytest.raises(ValueError, match="no_code_penalty"):
        hrd_token_advantages(1.0, 1.0, [0], no_code_penalty=float("nan"))


def test_doctests() -> None:
    result = doctest.testmod(hrd_module)
    assert result.attempted >= 8 and result.failed == 0
