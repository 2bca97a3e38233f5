"""Composition or recall? Which op chain each answer of a fusion run wrote, against the task's and the training set's.

A fusion solution states its chain in its first docstring sentence ("... a generated fusion task (LayerNorm ->
HardSwish, float16): ..."), and an SFT model copies the template, sentence included. For every sample of a
`train_experiment.py` run (`samples-*.jsonl`), this reads the chain the answer declares and the chain of the task's
own solution, and asks whether each adjacent op pair of the declared chain occurs in a training solution. The held-out
split (`data/splits.py`, op-pair mode) gives every test task one pair that no training task has: an answer that
declares only training pairs has recited a known composition instead of writing the asked one.

    python benchmarks/fusion_recall.py runs/exp                  # every samples-*.jsonl of the run
    python benchmarks/fusion_recall.py runs/exp --json recall.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tritonrl.data.splits import op_pairs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiment_run import fusion_suite  # noqa: E402 - a sibling module of this script

CHAIN = re.compile(r"generated fusion task \((.*?), (\w+)\):")


def declared_chain(text: str) -> tuple[tuple[str, ...], str] | None:
    """(ops, dtype) a solution's docstring declares, or None when it declares none."""
    m = CHAIN.search(" ".join(text.split()))
    return (tuple(op.strip() for op in m.group(1).split("->")), m.group(2)) if m else None


def recall_rows(samples: list[dict], solutions: dict[str, str], train_ids: set[str]) -> list[dict]:
    """One row per sample: the task's chain, the declared one, and the declared pairs no training solution has."""
    train_pairs: set[tuple[str, str]] = set()
    for task_id in train_ids:
        if task_id in solutions and (chain := declared_chain(solutions[task_id])):
            train_pairs |= op_pairs(chain[0])
    rows = []
    for s in samples:
        wanted = declared_chain(solutions.get(s["task_id"], ""))
        wrote = declared_chain(s.get("text", ""))
        rows.append({
            "task_id": s["task_id"],
            "outcome": "passed" if s.get("passed") else f"{s.get('stage')}/{s.get('failure')}",
            "task_chain": " -> ".join(wanted[0]) if wanted else None,
            "declared_chain": " -> ".join(wrote[0]) if wrote else None,
            "as_asked": wrote is not None and wrote == wanted,
            "task_pairs_unseen": sorted(" -> ".join(p) for p in op_pairs(wanted[0]) - train_pairs)
            if wanted else [],
            "declared_pairs_unseen": sorted(" -> ".join(p) for p in op_pairs(wrote[0]) - train_pairs)
            if wrote else [],
        })  # fmt: skip
    return rows


def summary(rows: list[dict]) -> dict:
    declared = [r for r in rows if r["declared_chain"] is not None]
    return {
        "answers": len(rows),
        "declare_a_chain": len(declared),
        "as_asked": sum(r["as_asked"] for r in rows),
        "only_training_pairs": sum(not r["declared_pairs_unseen"] for r in declared),
        "tasks_with_an_unseen_pair": sum(bool(r["task_pairs_unseen"]) for r in rows),
        "passed": sum(r["outcome"] == "passed" for r in rows),
    }


def _run_solutions(run: Path) -> tuple[dict[str, str], set[str]]:
    """Every task's solution text and the training task ids of the run's data split (rebuilt from its args)."""
    args = json.loads((run / "results.json").read_text())["args"]
    suite = fusion_suite(args["tasks"], args["fusion_seed"], args["seed"])
    solutions = {e.task_id: e.solution for e in suite.entries if e.solution is not None}
    return solutions, {e.task_id for e in suite.only("train").entries}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a train_experiment.py --out folder (results.json, samples-*.jsonl)")
    ap.add_argument("--json", type=Path, default=None, help="also write every row and the summaries here")
    args = ap.parse_args()
    files = sorted(args.run.glob("samples-*.jsonl"))
    if not files:
        raise SystemExit(f"{args.run}: no samples-*.jsonl (train_experiment.py writes one per evaluated model)")
    solutions, train_ids = _run_solutions(args.run)
    report = {}
    for path in files:
        rows = recall_rows([json.loads(line) for line in path.open()], solutions, train_ids)
        report[path.name] = {"summary": summary(rows), "rows": rows}
        print(f"== {path.name}: {json.dumps(report[path.name]['summary'])}")
        for r in rows:
            mark = "as asked" if r["as_asked"] else f"unseen pairs declared: {r['declared_pairs_unseen'] or 'none'}"
            print(f"  {r['task_chain']}  ->  wrote {r['declared_chain']}  ({mark}; {r['outcome']})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
