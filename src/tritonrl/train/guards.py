"""Training-health callbacks: a step whose gradients are not finite is skipped, not applied; GRPO rounds that cannot
teach anything are reported.

Seen on an H100 (docs/benchmarks.md section 7): GRPO from a from-scratch model after SFT (token entropy 0.018, bf16)
logged `grad_norm: nan` at its second step; the optimizer applied it, every weight became NaN, and the next
generation died on a device-side assert. Gradient clipping does not help (a NaN norm scales every gradient to NaN).
`NonFiniteGradGuard` runs between clipping and the optimizer step: when the gradient norm is not finite it drops the
gradients (set to None, so the optimizer leaves every weight and its moments as they were), logs it, counts it in
the trainer's log, and stops training after `max_consecutive` such steps in a row (the model is then saved as it was
before the first bad step, never as NaN).

`NoSignalWatch`: when every group of a generation round scored the same (TRL's `frac_reward_zero_std` is 1), every
advantage is 0 and the round's steps change nothing. Seen on CPU (docs/benchmarks.md 7c): from a model that writes
no correct kernel yet, the binary reward gave 0 to all 64 completions of both rounds and the model ended exactly as
it started. The run still costs its full time, so the user is told at the first such round and in the summary.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import TrainerCallback

log = logging.getLogger(__name__)


def grads_finite(parameters: Any) -> bool:
    """True when every gradient of `parameters` is finite (one device sync, not one per tensor)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return True
    norms = torch._foreach_norm(grads)  # noqa: SLF001 - torch's fused per-tensor norms (what clip_grad_norm_ uses)
    return bool(torch.isfinite(torch.stack([n.float().to(norms[0].device) for n in norms])).all())


class NonFiniteGradGuard(TrainerCallback):
    """Skip optimizer steps with NaN/inf gradients; stop after `max_consecutive` in a row."""

    def __init__(self, max_consecutive: int = 3) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive={max_consecutive}: must be >= 1 (3 is the default).")
        self.max_consecutive = max_consecutive
        self.skipped = 0  # steps skipped in this run
        self.in_a_row = 0

    def on_pre_optimizer_step(self, args, state, control, model=None, optimizer=None, **kwargs):  # noqa: ANN001, ANN201
        if model is None or optimizer is None or grads_finite(model.parameters()):
            self.in_a_row = 0
            return control
        optimizer.zero_grad(set_to_none=True)  # torch optimizers skip parameters whose grad is None
        self.skipped += 1
        self.in_a_row += 1
        log.warning("step %d: non-finite gradients, update skipped (%d skipped so far, %d in a row)",
                    state.global_step + 1, self.skipped, self.in_a_row)  # fmt: skip
        if self.in_a_row >= self.max_consecutive:
            log.error("stopping: %d steps in a row had non-finite gradients; the weights are those before the first "
                      "of them (try a lower learning rate, or float32 for a small model)", self.in_a_row)  # fmt: skip
            control.should_training_stop = True
        return control


class NoSignalWatch(TrainerCallback):
    """Count GRPO generation rounds in which every group's rewards were equal (no advantage, no update): warn at the
    first, and say how many at the end. Rounds are the log entries that carry TRL's `frac_reward_zero_std`."""

    def __init__(self) -> None:
        self.rounds = 0
        self.silent = 0  # rounds whose every group had zero reward spread

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN201
        logs = logs or {}
        spread = logs.get("frac_reward_zero_std")
        if spread is None:
            return control
        self.rounds += 1
        if float(spread) >= 1.0:
            self.silent += 1
            if self.silent == 1:
                log.warning("step %d: every group of this generation round scored the same (mean reward %s): zero "
                            "advantage, so its steps change nothing. From a model that is never right, a binary reward "
                            "cannot teach: train more SFT first, or use partial credit (the staged_reward extension, "
                            "e.g. --preset staged_eval_only or easy_combo)", state.global_step,
                            logs.get("reward", "?"))  # fmt: skip
        return control

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if self.silent:
            log.warning("%d of %d generation rounds had no learning signal (every group's rewards equal)", self.silent,
                        self.rounds)  # fmt: skip
        return control
