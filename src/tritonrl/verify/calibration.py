"""Parent side of the trusted calibration: device ceilings and torch.compile baselines, measured once and cached.

Cache: `$TRITONRL_CACHE_DIR` (default `~/.cache/tritonrl`) / `calibration.json`, keyed by GPU name, torch and triton
versions (and, for compile baselines, the task source hash and sizes). A measurement runs in a subprocess
(`calibrate.py`) while this process holds the GPU exclusively; a failed measurement is logged and leaves the
field empty (the verdict then lacks the roofline or the compile speedup; nothing is guessed).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tritonrl.tasks.schema import Task
from tritonrl.verify.config import VerifyConfig
from tritonrl.verify.gpu_lock import GpuLock
from tritonrl.verify.timing_stats import Ceilings

log = logging.getLogger(__name__)
CALIBRATE_TIMEOUT_S = 900.0
_memo: dict[str, Any] = {}
_memo_lock = threading.Lock()


def cache_path() -> Path:
    base = Path(os.environ.get("TRITONRL_CACHE_DIR") or Path.home() / ".cache" / "tritonrl")
    base.mkdir(parents=True, exist_ok=True)
    return base / "calibration.json"


def _device_key(cfg: VerifyConfig) -> str:
    import torch
    import triton

    name = torch.cuda.get_device_name(cfg.gpu_index or 0)
    return f"{name}|torch {torch.__version__}|triton {triton.__version__}"


@contextlib.contextmanager
def _cache_locked() -> Any:
    path = cache_path()
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, json.JSONDecodeError):
            log.warning("calibration cache %s is unreadable; starting a new one", path)
            data = {}
        yield data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)  # atomic: readers never see half a file


def _run(cfg: VerifyConfig, request: dict[str, Any]) -> dict[str, Any]:
    env = dict(os.environ)
    if (index := cfg.gpu_index) is not None:
        visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[index] if index < len(visible) else str(index)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    with GpuLock(cfg.device).exclusive():
        proc = subprocess.run(
            [sys.executable, "-m", "tritonrl.verify.worker.calibrate"],
            input=json.dumps(request), capture_output=True, text=True, env=env, timeout=CALIBRATE_TIMEOUT_S,
        )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"calibration exited {proc.returncode}: {proc.stderr[-1500:]}"}
    return json.loads(lines[-1])


def _cached(key: str, request: dict[str, Any], cfg: VerifyConfig, field: str) -> dict[str, Any] | None:
    with _memo_lock:
        if key in _memo:
            return _memo[key]
    with _cache_locked() as data:
        if key not in data:
            log.info("calibrating on the GPU (%s): %s", field, key)
            result = _run(cfg, request)
            if "error" in result or field not in result:
                log.warning("calibration of %s failed: %s", field, result.get("error", "no result"))
                data[key] = None
            else:
                data[key] = result[field]
        value = data[key]
    with _memo_lock:
        _memo[key] = value
    return value


def device_ceilings(cfg: VerifyConfig) -> Ceilings | None:
    key = "ceilings|" + _device_key(cfg)
    found = _cached(key, {"ceilings": True}, cfg, "ceilings")
    if not found:
        return None
    return Ceilings(found["gpu"], found["bandwidth_gbs"], found["flops_tflops"], found["l2_bytes"])


def compile_ratio(task: Task, sizes: dict[str, Any], cfg: VerifyConfig) -> float | None:
    """torch.compile'd reference time over eager reference time, on this GPU, at these sizes."""
    digest = hashlib.sha256(task.source.encode()).hexdigest()[:16]
    key = f"compile|{_device_key(cfg)}|{digest}|{json.dumps(sizes, sort_keys=True)}"
    spec = {
        "task_source": task.source,
        "task_id": task.task_id,
        "roles": {c.name: c.role.value for c in task.constants},
        "sizes": dict(sizes),
    }
    found = _cached(key, {"compile": spec}, cfg, "compile")
    return float(found["compile_ratio"]) if found else None
