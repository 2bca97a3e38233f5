"""Stages EXTRACT and PARSE: finding the code in files and completions, and the failures each stage reports."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tritonrl.tasks.loader import builtin_task
from tritonrl.tasks.schema import Task
from tritonrl.types import FailureKind, Stage
from tritonrl.verify.extract import extract_code, parse_candidate
from tritonrl.verify.static_checks import run_static_checks

K = FailureKind
ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = sorted((ROOT / "src/tritonrl/tasks/builtin/solutions").glob("*.py"))
FIXTURES = sorted(
    p
    for r in (ROOT / "tests/fixtures/candidates", ROOT / "src/tritonrl/tasks/builtin/examples")
    for p in r.glob("*/*")
    if p.suffix in (".py", ".txt")
)
_EXPECT = re.compile(r"#\s*expect:\s*stage=(extract|parse)\s+failure=(\w+)")
EARLY_FIXTURES = [(p, m.group(1), m.group(2)) for p in FIXTURES if (m := _EXPECT.match(p.read_text()))]
PASSING_COMPLETIONS = [p for p in FIXTURES if p.suffix == ".txt" and p.read_text().startswith("# expect: pass")]
CODE = "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    def forward(self, x):\n        return x\n"
HELPER = "def helper(x):\n    return x\n"


def fenced(code: str, tag: str = "python", fence: str = "```") -> str:
    return f"{fence}{tag}\n{code}{fence}\n"


def task(names: tuple[str, ...] = (), n_required: int | None = None, varargs: bool = False) -> Task:
    n = len(names) if n_required is None else n_required
    return Task(task_id="t", source="", init_arg_names=names, init_n_required=n, init_has_varargs=varargs)


# --- EXTRACT ------------------------------------------------------------------------------------------------------


def test_whole_python_file_is_taken_as_is():
    code, outcome = extract_code(CODE)
    assert (code, outcome.ok, outcome.stage) == (CODE, True, Stage.EXTRACT)


def test_python_file_with_fences_inside_a_string_is_not_split():
    source = 'PROMPT = """\n```python\nx = 1\n```\n"""\n' + CODE
    assert extract_code(source)[0] == source


@pytest.mark.parametrize("tag", ["python", "py", "Python", "python3", ""])
def test_fenced_block_tags(tag):
    code, outcome = extract_code(f"Here is my kernel:\n\n{fenced(CODE, tag)}\nIt is fast.")
    assert outcome.ok and code == CODE


def test_tilde_fence():
    assert extract_code("Answer:\n" + fenced(CODE, fence="~~~"))[0] == CODE


def test_longer_fence_contains_shorter_one():
    inner = "s = '''\n```\n'''\n" + CODE
    assert extract_code("Answer:\n" + fenced(inner, fence="````"))[0] == inner


def test_indented_fence_is_dedented():
    block = "  ```python\n" + "".join("  " + line + "\n" for line in CODE.splitlines()) + "  ```\n"
    assert extract_code("1. the code:\n" + block)[0] == CODE


def test_think_block_is_stripped():
    text = "<think>maybe\n```python\nclass ModelNew: pass\n```\n</think>\nFinal:\n" + fenced(CODE)
    assert extract_code(text)[0] == CODE


def test_lone_close_think_drops_the_reasoning_before_it():
    text = "reasoning that the template opened\n```python\nclass ModelNew: pass\n```\n</think>\n" + fenced(CODE)
    assert extract_code(text)[0] == CODE


def test_unterminated_think_is_no_answer_yet():
    code, outcome = extract_code("<think>\nLet me write the kernel.\n```python\n" + CODE)
    assert code is None and (outcome.ok, outcome.failure) == (False, K.NO_CODE)
    assert "think" in outcome.message


def test_last_block_defining_modelnew_wins():
    second = CODE.replace("return x", "return x + 0")
    usage = fenced("m = ModelNew()\n")
    text = f"First try:\n{fenced(CODE)}\nBetter:\n{fenced(second)}\nUsage:\n{usage}"
    code, outcome = extract_code(text)
    assert code == second
    assert "3 code blocks" in outcome.message


def test_blocks_without_modelnew_fall_back_to_last_python_block():
    code, outcome = extract_code(fenced(HELPER) + "\n" + fenced("pip install triton\n", "bash"))
    assert outcome.ok and code == HELPER
    assert "none defines ModelNew" in outcome.message
    tree, parsed = parse_candidate(code, None)
    assert tree is None and parsed.failure is K.NO_MODELNEW


def test_only_non_python_blocks_is_no_code():
    code, outcome = extract_code(fenced("pip install triton\n", "bash") + fenced("{}\n", "json"))
    assert code is None and outcome.failure is K.NO_CODE
    assert outcome.message == "2 code blocks (bash, json), none is Python"


def test_empty_block_is_no_code():
    assert extract_code("```python\n```\n")[1].failure is K.NO_CODE


def test_unterminated_final_fence_runs_to_the_end():
    code, outcome = extract_code("Sure:\n```python\n" + CODE)
    assert outcome.ok and code == CODE
    assert "unterminated" in outcome.message


def test_unfenced_code_after_prose():
    code, outcome = extract_code("Here is an optimized version.\nIt fuses the ops.\n" + CODE)
    assert outcome.ok and code == CODE


def test_unfenced_broken_code_with_modelnew_is_left_to_parse():
    code, outcome = extract_code("My answer:\n" + CODE + "This works because of tiling.\n")
    assert outcome.ok and code.startswith("import torch")
    assert parse_candidate(code, None)[1].failure is K.SYNTAX_ERROR


@pytest.mark.parametrize(
    "text", ["", "   \n\t", "I cannot help with that.", "Sure", "<think>\n</think>\n", "The kernel is below:"]
)
def test_no_code(text):
    code, outcome = extract_code(text)
    assert code is None
    assert (outcome.stage, outcome.ok, outcome.failure) == (Stage.EXTRACT, False, K.NO_CODE)


def test_crlf_line_endings():
    assert extract_code(fenced(CODE).replace("\n", "\r\n"))[0] == CODE


# --- PARSE --------------------------------------------------------------------------------------------------------


def test_parse_ok():
    tree, outcome = parse_candidate(CODE, task())
    assert tree is not None and outcome.ok and outcome.stage is Stage.PARSE


def test_syntax_error_names_line_and_text():
    tree, outcome = parse_candidate("import torch\nclass ModelNew(:\n    pass\n", None)
    assert tree is None and outcome.failure is K.SYNTAX_ERROR
    assert outcome.line == 2 and "line 2" in outcome.message and "class ModelNew(:" in outcome.message


def test_null_byte_is_a_syntax_error():
    assert parse_candidate("x = 1\0", None)[1].failure is K.SYNTAX_ERROR


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (HELPER, "no top-level `class ModelNew`"),
        ("class Model:\n    pass\n", "top-level classes: Model"),
        ("def f():\n    class ModelNew:\n        pass\n", "not at the top level"),
        ("class Fast:\n    pass\ndef make():\n    return Fast\nModelNew = make()\n", "assigned at line 5"),
        ("ModelNew = Fast\nclass Fast:\n    pass\n", "not to a class defined above it"),
        ("class Fast:\n    pass\nModelNew: type\n", "assigned at line 3"),  # an annotation alone binds nothing
    ],
)
def test_no_modelnew(code, hint):
    tree, outcome = parse_candidate(code, None)
    assert tree is None and outcome.failure is K.NO_MODELNEW
    assert hint in outcome.message


def test_duplicate_modelnew_warns():
    tree, outcome = parse_candidate(CODE + "\n\n" + CODE.split("\n\n\n")[1], None)
    assert outcome.ok and "2 times" in outcome.warnings[0]


def test_an_alias_of_a_top_level_class_is_modelnew_and_its_signature_is_checked():
    # KernelBench's loader reads the name ModelNew, so `ModelNew = FastModel` is a ModelNew (a false reject before)
    code = "import torch\nclass Fast(torch.nn.Module):\n    def __init__(self, a):\n        super().__init__()\n"
    code += "Alias = Fast\nModelNew: type = Alias\n"
    tree, outcome = parse_candidate(code, task(("a",)))
    assert tree is not None and outcome.ok and outcome.line == 6
    assert parse_candidate(code, task(("a", "b")))[1].failure is K.BAD_SIGNATURE  # Fast's __init__ is the one read


def test_a_later_binding_of_modelnew_is_the_one_checked():
    code = CODE + "\n\nclass Other(torch.nn.Module):\n    def __init__(self, a, b, c):\n        super().__init__()\n"
    tree, outcome = parse_candidate(code + "ModelNew = Other\n", task(("a", "b", "c")))
    assert outcome.ok and "2 times" in outcome.warnings[0]
    assert parse_candidate(code + "ModelNew = Other\n", task())[1].failure is K.BAD_SIGNATURE


@pytest.mark.parametrize(
    "code",
    [
        "class Model(torch.nn.Module):\n    pass\nModelNew = Model\n",
        "class Model(torch.nn.Module):\n    pass\nclass Fast(Model):\n    pass\nModelNew = Fast\n",
    ],
)
def test_an_alias_of_the_reference_or_of_its_subclass_is_refused_by_the_static_checks(code):
    code = "import torch\n" + code
    tree, outcome = parse_candidate(code, None)
    assert outcome.ok
    static = run_static_checks(tree, code)
    assert (static.stage, static.failure) == (Stage.STATIC, K.FORBIDDEN_CONSTRUCT)
    assert "is or inherits from Model" in static.message


def test_the_block_with_an_aliased_modelnew_is_chosen():
    alias = "import torch\nclass Fast(torch.nn.Module):\n    pass\n\nModelNew = Fast\n"
    code, outcome = extract_code(fenced(alias) + "\nand a usage example:\n" + fenced("print(ModelNew())"))
    assert code == alias and "which defines ModelNew" in outcome.message


def modelnew(params: str) -> str:
    return f"import torch\nclass ModelNew(torch.nn.Module):\n    def __init__({params}):\n        super().__init__()\n"


@pytest.mark.parametrize(
    ("params", "names", "n_required", "varargs"),
    [
        ("self, in_features, out_features, bias", ("in_features", "out_features", "bias"), None, False),
        ("self, a, b, c=None, d=1", ("a", "b", "c"), None, False),  # extra optional parameters
        ("self, a, b", ("a", "b", "c"), 2, False),  # Model's optional argument dropped
        ("self, *args", ("a", "b"), None, False),
        ("self, a, b, c", ("a",), None, True),  # Model takes *args
        ("self, a, /, b=2", ("a", "b"), None, False),
    ],
)
def test_compatible_signatures(params, names, n_required, varargs):
    assert parse_candidate(modelnew(params), task(names, n_required, varargs))[1].ok


def test_missing_init_means_no_arguments():
    assert parse_candidate(CODE, task())[1].ok
    outcome = parse_candidate(CODE, task(("features",)))[1]
    assert outcome.failure is K.BAD_SIGNATURE


def test_too_few_parameters():
    tree, outcome = parse_candidate(modelnew("self, a"), task(("in_features", "out_features", "bias")))
    assert tree is None and (outcome.stage, outcome.failure) == (Stage.PARSE, K.BAD_SIGNATURE)
    assert outcome.message == "ModelNew(self, a) cannot accept Model's 3 arguments (in_features, out_features, bias)"


def test_too_many_required_parameters():
    outcome = parse_candidate(modelnew("self, a, b, c"), task(("x", "y"), n_required=1))[1]
    assert outcome.failure is K.BAD_SIGNATURE
    expected = "ModelNew(self, a, b, c) requires 3 arguments but Model(self, x, y=...) is given at most 2"
    assert outcome.message == expected


def test_init_inherited_from_a_local_base_is_used():
    code = "import torch\nclass Base(torch.nn.Module):\n    def __init__(self, a, b):\n        super().__init__()\n"
    code += "class ModelNew(Base):\n    pass\n"
    assert parse_candidate(code, task(("a", "b")))[1].ok
    assert parse_candidate(code, task(("a", "b", "c")))[1].failure is K.BAD_SIGNATURE


def test_unknown_base_skips_the_signature_check():
    code = "import torch\nclass ModelNew(torch.nn.Linear):\n    pass\n"
    assert parse_candidate(code, task(("in_features", "out_features")))[1].ok


# --- fixtures and bundled solutions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "stage", "kind"), EARLY_FIXTURES, ids=[f"{p.parent.name}/{p.stem}" for p, *_ in EARLY_FIXTURES]
)
def test_early_stage_fixtures(path, stage, kind):
    code, outcome = extract_code(path.read_text())
    if outcome.ok:
        _, outcome = parse_candidate(code, builtin_task(path.parent.name))
    assert (outcome.stage.value, outcome.failure) == (stage, FailureKind(kind)), outcome.message


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_builtin_solutions_extract_and_parse(path):
    code, outcome = extract_code(path.read_text())
    assert outcome.ok and code == path.read_text()
    tree, outcome = parse_candidate(code, builtin_task(path.stem))
    assert tree is not None and outcome.ok, outcome.message


@pytest.mark.parametrize("path", PASSING_COMPLETIONS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_passing_completions_clear_the_cheap_stages(path):
    code, outcome = extract_code(path.read_text())
    assert outcome.ok, outcome.message
    tree, outcome = parse_candidate(code, builtin_task(path.parent.name))
    assert tree is not None, outcome.message
    outcome = run_static_checks(tree, code)
    assert outcome.ok, outcome.message
