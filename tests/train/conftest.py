"""Training-test helpers: snapshot the trainable (LoRA) parameters at the start and end of a run; poison every
gradient with NaN before the optimizer step."""

from __future__ import annotations

import pytest


class LoraSnapshot:
    """A TrainerCallback that clones every trainable parameter on train begin and end."""

    def __new__(cls):  # built lazily so importing this file needs no transformers
        from transformers import TrainerCallback

        class _Snapshot(TrainerCallback):
            def __init__(self) -> None:
                self.before: dict = {}
                self.after: dict = {}

            @staticmethod
            def _trainable(model) -> dict:
                return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

            def on_train_begin(self, args, state, control, model=None, **kwargs):
                self.before = self._trainable(model)

            def on_train_end(self, args, state, control, model=None, **kwargs):
                self.after = self._trainable(model)

            def unchanged(self) -> list[str]:
                import torch

                return [n for n, p in self.before.items() if torch.equal(p, self.after[n])]

        return _Snapshot()


@pytest.fixture
def lora_snapshot():
    return LoraSnapshot()


class PoisonGrads:
    """A TrainerCallback that fills every gradient with NaN before the optimizer step (user callbacks run before the
    trainer's own guard), as the H100 GRPO run's second step had them."""

    def __new__(cls):
        from transformers import TrainerCallback

        class _Poison(TrainerCallback):
            def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
                for p in model.parameters():
                    if p.grad is not None:
                        p.grad.fill_(float("nan"))

        return _Poison()


@pytest.fixture
def poison_grads():
    return PoisonGrads()
