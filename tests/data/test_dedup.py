"""tasks/dedup.py: the normalized source hash ignores comments, docstrings and layout, and nothing else."""

from __future__ import annotations

from tritonrl.data.dedup import dedup, normalized_hash
from tritonrl.tasks.loader import builtin_task

SOURCE = builtin_task("relu").source


def test_comments_docstrings_and_layout_do_not_count():
    noisy = "# a comment\n\n" + SOURCE.replace("Applies torch.relu", "Another docstring:").replace(
        "):\n", "):  # c\n\n"
    ).replace("dim = 16384", "dim   =   (16384)")
    assert normalized_hash(noisy) == normalized_hash(SOURCE)


def test_code_changes_do_count():
    assert normalized_hash(SOURCE.replace("torch.relu", "torch.sigmoid")) != normalized_hash(SOURCE)


def test_unparseable_sources_hash_their_stripped_text():
    assert normalized_hash("def f(:\n  x") == normalized_hash("  def f(:\nx  \n\n")


def test_dedup_keeps_the_first_and_names_it():
    items = [("a", SOURCE), ("b", SOURCE + "\n# trailing\n"), ("c", builtin_task("softmax").source)]
    kept, dropped = dedup(items, lambda i: i[1], lambda i: i[0])
    assert [i[0] for i in kept] == ["a", "c"]
    assert dropped == [("b", "duplicate of a (same source up to comments and layout)")]
