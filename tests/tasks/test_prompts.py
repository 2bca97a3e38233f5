"""tasks/prompts.py: one-shot and zero-shot prompts, the run's default style, and its validation."""

from __future__ import annotations

import pytest

from tritonrl.errors import ConfigError
from tritonrl.tasks.loader import builtin_task
from tritonrl.tasks.prompts import (
    EXAMPLE_TASK,
    INSTRUCTION,
    SYSTEM,
    PromptStyle,
    build_messages,
    prompt_style,
    render_prompt,
    set_default_style,
    user_prompt,
)

EXAMPLE_MARK = "Example. For this reference:"


@pytest.fixture
def restore_default_style():
    before = prompt_style()
    yield
    set_default_style(before)


def test_one_shot_carries_the_example_and_zero_shot_does_not():
    relu = builtin_task("relu")
    one, zero = user_prompt(relu, style="one-shot"), user_prompt(relu, style=PromptStyle.ZERO_SHOT)
    assert EXAMPLE_MARK in one and builtin_task(EXAMPLE_TASK).source.strip() in one
    assert EXAMPLE_MARK not in zero
    for text in (one, zero):
        assert text.startswith(INSTRUCTION) and text.endswith(f"```python\n{relu.source.strip()}\n```")


def test_the_example_task_never_gets_its_own_answer():
    assert EXAMPLE_MARK not in user_prompt(builtin_task(EXAMPLE_TASK), style="one-shot")


def test_default_is_one_shot_and_the_run_can_change_it(restore_default_style):
    relu = builtin_task("relu")
    assert prompt_style() is PromptStyle.ONE_SHOT
    assert build_messages(relu) == build_messages(relu, style="one-shot")
    assert set_default_style("zero-shot") is PromptStyle.ZERO_SHOT
    assert build_messages(relu) == build_messages(relu, style="zero-shot")
    assert EXAMPLE_MARK in build_messages(relu, style="one-shot")[-1]["content"]  # an explicit style wins


def test_messages_and_plain_render():
    relu = builtin_task("relu")
    messages = build_messages(relu, style="zero-shot")
    assert [m["role"] for m in messages] == ["system", "user"] and messages[0]["content"] == SYSTEM
    assert [m["role"] for m in build_messages(relu, system=None)] == ["user"]
    assert render_prompt(relu, style="zero-shot") == f"{SYSTEM}\n\n{messages[1]['content']}"


def test_unknown_style_names_the_choices():
    with pytest.raises(ConfigError, match=r"'two-shot'.*one-shot, zero-shot.*--prompt zero-shot"):
        prompt_style("two-shot")
    with pytest.raises(ConfigError, match="two-shot"):
        user_prompt(builtin_task("relu"), style="two-shot")
