"""tasks/check.py and `tritonrl tasks check`: a per-task report, broken tasks reported (never raised)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tritonrl.cli.main import main
from tritonrl.data.check import check_task
from tritonrl.tasks.loader import builtin_task, load_task

BAD = Path(__file__).resolve().parents[1] / "fixtures/tasks/bad"


def test_builtin_task_checks_ok():
    result = check_task(builtin_task("softmax"))
    assert result.ok and result.n_variants == 2 and result.base


def test_a_reference_that_raises_is_reported_not_raised():
    result = check_task(load_task(BAD / "raises.py"))
    assert not result.ok and result.error


def test_cli_check_exit_codes_and_json(tmp_path, capsys):
    shutil.copy(BAD / "raises.py", tmp_path / "raises.py")
    shutil.copy(builtin_task("relu").path, tmp_path / "relu.py")
    assert main(["tasks", "check", "--suite", str(tmp_path), "--json"]) == 1
    rows = {r["task_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["relu"]["ok"] and not rows["raises"]["ok"]
    assert main(["tasks", "check"]) == 0
    assert "10/10 tasks can be verified" in capsys.readouterr().out


def test_reason_is_one_line_without_the_repeated_task_id():
    result = check_task(load_task(BAD / "raises.py"))
    assert "\n" not in result.reason and f"task {result.task_id}:" not in result.reason
    assert result.reason.startswith("The reference does not build") and "Model.forward raised" in result.reason


def test_a_task_without_size_constants_is_checked_at_its_one_shape():
    from tritonrl.data.check import NO_SIZES_NOTE

    source = "import torch\nclass Model(torch.nn.Module):\n    def forward(self, x):\n        return x.relu()\n"
    source += "def get_inputs():\n    return [torch.randn([4, 4])]\ndef get_init_inputs():\n    return []\n"
    result = check_task(load_task(source, task_id="tiny"))
    assert result.ok and result.n_variants == 0 and NO_SIZES_NOTE in result.notes
