"""Stages EXTRACT and PARSE: pull the candidate's code out of a file or an LLM completion, parse it, find ModelNew.

`extract_code` accepts a whole `.py` file or a raw completion (reasoning blocks, prose, markdown fences) and returns
the source to verify. `parse_candidate` parses it and checks that `ModelNew` exists and can be constructed with the
arguments `Model` takes. Pure Python: nothing here imports torch or triton, and nothing executes the candidate.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re

from tritonrl.tasks.schema import Task
from tritonrl.types import FailureKind, Stage, StageOutcome

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)
_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*?)[ \t]*$")
# `class ModelNew` or a top-level alias `ModelNew = FastModel` (KernelBench's loader takes either: it reads the name)
_DEFINES_MODELNEW = re.compile(r"^(?:[ \t]*class[ \t]+ModelNew\b|ModelNew[ \t]*(?::[^=\n]*)?=(?!=))", re.MULTILINE)
_CODE_START = re.compile(r"^(import |from |@|class |def |#)")
_PYTHON_TAGS = frozenset({"", "py", "py3", "python", "python3", "ipython", "triton"})
_MAX_START_TRIES = 20  # candidate start lines tried when stripping prose in front of unfenced code


@dataclasses.dataclass(frozen=True, slots=True)
class _Block:
    tag: str  # first word of the fence's info string, lower-cased ("" when untagged)
    code: str
    terminated: bool  # False for a final fence that runs to the end of the text


def extract_code(text: str) -> tuple[str | None, StageOutcome]:
    """Find the candidate's source in a file or an LLM completion (stage EXTRACT).

    Args:
        text: a whole `.py` file, or a completion with optional `<think>` blocks, prose and markdown fences.

    Returns:
        (code, outcome). `code` is None exactly when the outcome failed (NO_CODE).
    """
    text = text.replace("\r\n", "\n").lstrip("\ufeff")  # a UTF-8 byte-order mark is not code
    text, problem = _strip_reasoning(text)
    if problem:
        return None, _fail(Stage.EXTRACT, FailureKind.NO_CODE, problem)
    if not text.strip():
        return None, _fail(Stage.EXTRACT, FailureKind.NO_CODE, "empty answer")
    if _is_python_source(text):  # a plain .py file; fences inside its strings are not markdown
        return text, StageOutcome(Stage.EXTRACT, ok=True, message="whole text is Python")
    blocks = _fenced_blocks(text)
    if blocks:
        return _choose_block(blocks)
    return _unfenced(text)


def strip_main_guard(code: str, tree: ast.Module) -> tuple[str, ast.Module]:
    """Blank out top-level `if __name__ == "__main__":` blocks (LLM answers often end with a self-test).

    The worker imports the candidate as a module, so such a block would never run; removing it keeps its test-only
    imports (time, numpy, triton.testing) from tripping the static rules. Lines are blanked, not deleted, so line
    numbers in later messages still match the candidate's text.
    """
    lines = code.split("\n")
    kept = []
    for node in tree.body:
        if _is_main_guard(node):
            for i in range(node.lineno - 1, node.end_lineno or node.lineno):
                lines[i] = ""
        else:
            kept.append(node)
    if len(kept) == len(tree.body):
        return code, tree
    new_code = "\n".join(lines)
    return new_code, ast.parse(new_code)


def _is_main_guard(node: ast.stmt) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def parse_candidate(code: str, task: Task | None) -> tuple[ast.Module | None, StageOutcome]:
    """Parse the candidate, find a top-level `class ModelNew` and check its constructor (stage PARSE).

    Args:
        code: the extracted source.
        task: the reference task, for the constructor check; None skips that check.

    Returns:
        (tree, outcome). `tree` is None exactly when the outcome failed.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        line_text = (e.text or "").strip()[:120]
        message = (f"line {e.lineno}: " if e.lineno else "") + e.msg + (f": {line_text}" if line_text else "")
        return None, _fail(Stage.PARSE, FailureKind.SYNTAX_ERROR, message, line=e.lineno)
    except (ValueError, RecursionError) as e:  # null bytes; nesting too deep for the parser
        return None, _fail(Stage.PARSE, FailureKind.SYNTAX_ERROR, f"cannot parse: {type(e).__name__}")

    bindings = model_new_bindings(tree)
    model_new = bindings[-1][1] if bindings else None  # the last binding is the one Python keeps
    if model_new is None:
        return None, _fail(Stage.PARSE, FailureKind.NO_MODELNEW, _why_no_modelnew(tree))
    last = bindings[-1][0].lineno
    warnings = (f"ModelNew is defined {len(bindings)} times; the last one (line {last}) counts",)
    warnings = warnings if len(bindings) > 1 else ()

    if task is not None:
        try:
            problem = _signature_problem(model_new, tree, task)
        except RecursionError:  # e.g. a 1000-term default value: unparsing it would overflow the stack
            return None, _fail(Stage.PARSE, FailureKind.FORBIDDEN_CONSTRUCT, "ModelNew's signature is nested too "
                               "deeply to analyse", line=model_new.lineno)  # fmt: skip
        if problem:
            return None, _fail(Stage.PARSE, FailureKind.BAD_SIGNATURE, problem, line=model_new.lineno)
    return tree, StageOutcome(Stage.PARSE, ok=True, warnings=warnings, line=last)


def model_new_bindings(tree: ast.Module) -> list[tuple[ast.stmt, ast.ClassDef | None]]:
    """The module's top-level bindings of `ModelNew`, in order: each statement with the class it binds, that is
    `class ModelNew`, or `ModelNew = Name` (also annotated) naming a top-level class bound before it (through other
    such aliases); None where the class cannot be read from the source (any other value)."""
    classes: dict[str, ast.ClassDef | None] = {}
    found: list[tuple[ast.stmt, ast.ClassDef | None]] = []
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bound, value = [node.name], node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound = [t.id for t in targets if isinstance(t, ast.Name)]
            value = classes.get(node.value.id) if isinstance(node.value, ast.Name) else None
        else:
            continue  # `ModelNew: type` alone binds nothing
        classes.update(dict.fromkeys(bound, value))
        if "ModelNew" in bound:
            found.append((node, value))
    return found


# --- extraction helpers -------------------------------------------------------------------------------------------


def _strip_reasoning(text: str) -> tuple[str, str | None]:
    """Drop `<think>` blocks. Returns (text, problem); problem is set when the answer has not started yet."""
    text = _THINK_BLOCK.sub("", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:  # a chat template opened the block in the prompt: everything before the last close is reasoning
        text = text[closes[-1].end() :]
    opened = _THINK_OPEN.search(text)
    if opened:
        if not text[: opened.start()].strip():
            return "", "unterminated <think> block: no answer after the reasoning"
        text = text[: opened.start()]  # an answer, then a reasoning block that never closed
    return text, None


def _is_python_source(text: str) -> bool:
    """True when the text parses as Python and holds at least one import, def or class (not a one-word reply)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return False
    code_like = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return any(isinstance(node, code_like) for node in tree.body)


def _fenced_blocks(text: str) -> list[_Block]:
    """Markdown fenced blocks (``` or ~~~, any info string); a final unterminated fence runs to the end."""
    blocks: list[_Block] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opened = _FENCE_OPEN.match(lines[i])
        if not opened:
            i += 1
            continue
        fence, indent = opened["fence"], len(opened["indent"])
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        tag = re.match(r"[\w+#.-]*", opened["info"]).group().lower()
        body: list[str] = []
        i += 1
        while i < len(lines) and not closing.match(lines[i]):
            line = lines[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(" \t"))) :])
            i += 1
        code = "\n".join(body).rstrip("\n") + "\n"
        blocks.append(_Block(tag=tag, code=code, terminated=i < len(lines)))
        i += 1
    return blocks


def _choose_block(blocks: list[_Block]) -> tuple[str | None, StageOutcome]:
    """The last block that defines ModelNew; else the last Python-looking block; else NO_CODE."""
    n = len(blocks)
    count = f"{n} code block{'s' if n > 1 else ''}"
    nonempty = [b for b in blocks if b.code.strip()]
    if not nonempty:
        return None, _fail(Stage.EXTRACT, FailureKind.NO_CODE, f"{count}, all empty")
    with_model = [b for b in nonempty if _DEFINES_MODELNEW.search(b.code)]
    if with_model:
        chosen, how = with_model[-1], f"{count}; took block {blocks.index(with_model[-1]) + 1}, which defines ModelNew"
    else:
        pythonish = [b for b in nonempty if b.tag in _PYTHON_TAGS or b.tag.startswith("python")]
        if not pythonish:
            tags = ", ".join(sorted({b.tag or "untagged" for b in nonempty}))
            return None, _fail(Stage.EXTRACT, FailureKind.NO_CODE, f"{count} ({tags}), none is Python")
        chosen, how = pythonish[-1], f"{count}, none defines ModelNew; took the last Python block"
    if not chosen.terminated:
        how += " (unterminated fence)"
    return chosen.code, StageOutcome(Stage.EXTRACT, ok=True, message=how)


def _unfenced(text: str) -> tuple[str | None, StageOutcome]:
    """No fences: drop prose lines in front of the code; accept it if it parses or at least defines ModelNew."""
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if _CODE_START.match(line)][:_MAX_START_TRIES]
    for i in starts:
        code = "\n".join(lines[i:])
        if _is_python_source(code):
            return code, StageOutcome(Stage.EXTRACT, ok=True, message=_unfenced_message(i))
    if starts and _DEFINES_MODELNEW.search(text):
        code = "\n".join(lines[starts[0] :])  # PARSE will point at the syntax error
        return code, StageOutcome(Stage.EXTRACT, ok=True, message=_unfenced_message(starts[0]))
    if _DEFINES_MODELNEW.search(text):
        return text, StageOutcome(Stage.EXTRACT, ok=True, message="no code block; took the whole text")
    return None, _fail(Stage.EXTRACT, FailureKind.NO_CODE, "no code block, and the text is not Python")


def _unfenced_message(n_prose_lines: int) -> str:
    if n_prose_lines == 0:
        return "no code block; took the whole text"
    return f"no code block; took the text after {n_prose_lines} leading prose line{'s' if n_prose_lines > 1 else ''}"


# --- parsing helpers ----------------------------------------------------------------------------------------------


def _why_no_modelnew(tree: ast.Module) -> str:
    """Say what was found instead of a top-level `class ModelNew`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "ModelNew":
            return f"`class ModelNew` at line {node.lineno} is not at the top level of the module"
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "ModelNew" for t in targets):
                return (f"ModelNew is assigned at line {node.lineno}, not to a class defined above it at the top "
                        "level; define `class ModelNew`, or alias one: `ModelNew = FastModel`")  # fmt: skip
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    found = f"top-level classes: {', '.join(classes)}" if classes else "no top-level classes"
    return f"no top-level `class ModelNew` ({found})"


@dataclasses.dataclass(frozen=True, slots=True)
class _Signature:
    text: str  # as written, e.g. "self, a, b=2"
    capacity: float  # positional parameters after self (math.inf with *args)
    required: int  # positional parameters without defaults


def _signature_problem(model_new: ast.ClassDef, tree: ast.Module, task: Task) -> str | None:
    """A message when no positional call that Model accepts can be accepted by ModelNew, else None."""
    sig = _init_signature(model_new, tree, seen=set())
    if sig is None:  # an __init__ we cannot see (inherited from an unknown base): LOAD will tell
        return None
    names = task.init_arg_names
    model_capacity = math.inf if task.init_has_varargs else len(names)
    if sig.capacity < task.init_n_required:
        required = names[: task.init_n_required]
        what = "arguments" if task.init_n_required == len(names) else "required arguments"
        listed = f" ({', '.join(required)})" if required else ""
        return f"ModelNew({sig.text}) cannot accept Model's {task.init_n_required} {what}{listed}"
    if sig.required > model_capacity:
        optional = (f"{n}=..." for n in names[task.init_n_required :])
        model_sig = ", ".join(["self", *names[: task.init_n_required], *optional])
        return (
            f"ModelNew({sig.text}) requires {sig.required} argument{'s' if sig.required != 1 else ''} "
            f"but Model({model_sig}) is given at most {len(names)}"
        )
    return None


def _init_signature(cls: ast.ClassDef, tree: ast.Module, seen: set[str]) -> _Signature | None:
    """ModelNew.__init__'s positional shape; a missing __init__ is looked up in local base classes."""
    inits = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    if inits:
        args = inits[-1].args
        positional = [*args.posonlyargs, *args.args][1:]  # drop self
        text = ast.unparse(args)
        if len(text) > 100:
            text = text[:97] + "..."
        capacity = math.inf if args.vararg else len(positional)
        return _Signature(text=text, capacity=capacity, required=len(positional) - len(args.defaults))
    assigned = (t for n in cls.body if isinstance(n, ast.Assign) for t in n.targets)
    if any(isinstance(t, ast.Name) and t.id == "__init__" for t in assigned):
        return None  # `__init__ = something`: not checkable statically
    seen.add(cls.name)
    local = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for base in cls.bases:
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else None
        if name in local and name not in seen:
            return _init_signature(local[name], tree, seen)
        if name not in ("Module", "object"):
            return None  # an unknown base may define __init__
    return _Signature(text="self", capacity=0, required=0)


def _fail(stage: Stage, kind: FailureKind, message: str, line: int | None = None) -> StageOutcome:
    return StageOutcome(stage, ok=False, failure=kind, message=message, line=line)
