"""The import layering contract (pyproject's [tool.importlinter]): layers import only downwards, and the sandboxed
worker imports nothing of the parent side but the message and protocol modules (the trust line)."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "src/tritonrl/verify/worker"


def test_import_contracts_are_kept() -> None:
    # In a subprocess: import-linter reconfigures logging in the process that runs it.
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is a dev dependency: pip install -e '.[dev]'"
    run = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


def test_worker_modules_import_only_the_shared_parent_modules() -> None:
    # A second, import-linter-free reading of the trust line, over every import statement (function-local ones too).
    allowed = {"tritonrl.verify.messages", "tritonrl.verify.protocol"}
    for path in WORKER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                if name.startswith("tritonrl.verify.") and not name.startswith("tritonrl.verify.worker"):
                    assert name in allowed, f"{path.name} imports {name}: the worker may import only {sorted(allowed)}"
