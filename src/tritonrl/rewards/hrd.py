"""TritonRL's hierarchical reward decomposition (HRD): which tokens of a completion are code, and their advantages.

`split_plan_code` finds the character span `verify.extract.extract_code` takes as the code (mirroring its newline
and reasoning handling), `token_roles` maps tokenizer offsets to plan (0) / code (1), and `hrd_token_advantages`
turns sequence-level advantages into per-token ones: code tokens learn from correctness, plan tokens from speed (or
correctness when there is no speed reward), and an answer without code is penalised on every token. Pure Python:
`train/grpo.py::HRDGRPOTrainer` supplies the advantages and tokens.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence

from tritonrl.verify.extract import extract_code  # pure Python: no torch, nothing executed

log = logging.getLogger(__name__)

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)  # as in verify/extract.py
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def split_plan_code(completion: str) -> tuple[int, int]:
    """The [start, end) character span of `completion` holding the code `verify.extract.extract_code` takes.

    Everything outside the span is "plan" (reasoning, prose, the fence lines). The span excludes leading and
    trailing whitespace. No extractable code gives the empty span (len, len): every token is plan.

    >>> text = "Plan: one program per block.\\n```python\\nclass ModelNew:\\n    pass\\n```\\nDone."
    >>> start, end = split_plan_code(text)
    >>> text[start:end]
    'class ModelNew:\\n    pass'
    >>> split_plan_code("no code here")
    (12, 12)
    """
    n = len(completion)
    code, _ = extract_code(completion)
    if code is None:
        return n, n
    norm, norm_to_orig = _normalise_newlines(completion)
    answer, answer_to_norm = _answer_region(norm)
    found = _locate_lines(answer, code.rstrip("\n").split("\n"))
    if found is None:  # a mismatch between this mirror and extract_code: a bug, not a candidate's doing
        log.warning("split_plan_code: extracted code not found in the completion; treating it all as plan")
        return n, n
    start, end = found
    while start < end and answer[start].isspace():
        start += 1
    while end > start and answer[end - 1].isspace():
        end -= 1
    if start == end:
        return n, n
    return norm_to_orig[answer_to_norm[start]], norm_to_orig[answer_to_norm[end - 1]] + 1


def _normalise_newlines(text: str) -> tuple[str, list[int]]:
    """extract_code's preprocessing (CRLF -> LF, leading byte-order marks dropped), with the original index of
    every kept character."""
    index = [i for i, ch in enumerate(text) if not (ch == "\r" and text[i + 1 : i + 2] == "\n")]
    while index and text[index[0]] == "\ufeff":
        index.pop(0)
    return "".join(text[i] for i in index), index


def _answer_region(text: str) -> tuple[str, list[int]]:
    """extract_code's reasoning removal, with the position in `text` of every kept character."""
    keep = [True] * len(text)
    for m in _THINK_BLOCK.finditer(text):
        keep[m.start() : m.end()] = [False] * (m.end() - m.start())
    index = [i for i, k in enumerate(keep) if k]
    rest = "".join(text[i] for i in index)
    closes = list(_THINK_CLOSE.finditer(rest))
    start = closes[-1].end() if closes else 0
    opened = _THINK_OPEN.search(rest, start)
    end = opened.start() if opened else len(rest)
    return rest[start:end], index[start:end]


def _locate_lines(text: str, code_lines: list[str]) -> tuple[int, int] | None:
    """Span of the last run of lines of `text` equal to `code_lines` up to leading whitespace (fences dedent)."""
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    k = len(code_lines)

    def same(line: str, code_line: str) -> bool:
        return line.endswith(code_line) and not line[: len(line) - len(code_line)].strip(" \t")

    for i in range(len(lines) - k, -1, -1):
        if all(same(lines[i + j], code_lines[j]) for j in range(k)):
            start = offsets[i] + len(lines[i]) - len(code_lines[0])
            return start, offsets[i + k - 1] + len(lines[i + k - 1])
    return None


def token_roles(completion: str, offsets: Sequence[tuple[int, int]]) -> list[int]:
    """Role of every token of a completion: 1 = code, 0 = plan.

    Args:
        completion: the completion text the offsets refer to.
        offsets: per token, its [start, end) character offsets in `completion` (a tokenizer's `offset_mapping`
            with `return_offsets_mapping=True`, computed on the completion alone).

    A token is code when it overlaps the `split_plan_code` span by at least one character; zero-width tokens
    (special tokens report (0, 0)) are plan.

    >>> text = "Plan.\\n```python\\nclass ModelNew:\\n    pass\\n```"
    >>> token_roles(text, [(0, 5), (5, 16), (16, 21), (21, 31), (31, 40), (40, 44), (0, 0)])
    [0, 0, 1, 1, 1, 0, 0]
    """
    start, end = split_plan_code(completion)
    return [1 if s < e and s < end and e > start else 0 for s, e in offsets]


def hrd_token_advantages(
    code_adv: float, plan_adv: float | None, roles: Sequence[int], alpha: float = 0.1, *, no_code_penalty: float = 0.1
) -> list[float]:
    """TritonRL's hierarchical reward decomposition: per-token advantages from sequence-level advantages.

    Code tokens (role 1) get the correctness advantage `code_adv`. Plan tokens (role 0) get `alpha * plan_adv`, the
    down-weighted speed advantage (TritonRL uses alpha = 0.1; shared/notes/verification.md 1.2), or, with no speed
    reward (`plan_adv` None: every CPU run), the correctness advantage too: the plan shares the code's fate rather than
    learning nothing. An answer with no code token is a format failure: every token gets min(code_adv, 0) minus
    `no_code_penalty`, negative even in a group where every answer failed (whose group advantage is 0).

    >>> hrd_token_advantages(code_adv=1.0, plan_adv=-2.0, roles=[0, 0, 1, 1, 0])
    [-0.2, -0.2, 1.0, 1.0, -0.2]
    >>> hrd_token_advantages(code_adv=-0.5, plan_adv=None, roles=[0, 1])  # no speed reward: plan follows the code
    [-0.5, -0.5]
    >>> hrd_token_advantages(code_adv=0.0, plan_adv=None, roles=[0, 0])  # no code at all
    [-0.1, -0.1]
    """
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha={alpha}: must be a finite number >= 0 (TritonRL: 0.1).")
    if not (math.isfinite(no_code_penalty) and no_code_penalty >= 0):
        raise ValueError(f"no_code_penalty={no_code_penalty}: must be a finite number >= 0 (default 0.1).")
    bad = sorted({r for r in roles if r not in (0, 1)})
    if bad:
        raise ValueError(f"roles contain {bad}: each must be 0 (plan) or 1 (code), as token_roles returns.")
    if not any(roles):
        return [min(float(code_adv), 0.0) - no_code_penalty] * len(roles)
    plan = float(code_adv) if plan_adv is None else alpha * plan_adv
    return [float(code_adv) if r == 1 else plan for r in roles]
