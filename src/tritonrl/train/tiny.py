"""The 0.1M-parameter plumbing model: `init_model.write_model` with a 2-layer shape and a tokenizer trained on the
built-in tasks only, built offline in a few seconds.

For plumbing runs (tests, `scripts/gpu_train_smoke.sh`), never for results: it answers nothing sensible. For a model
that can learn, use `tritonrl train init-model --size tiny|small|base`. `tritonrl train tiny-model --out DIR` calls
`build_tiny_model`.
"""

from __future__ import annotations

from pathlib import Path

from tritonrl.train.init_model import ModelShape, corpus_texts, write_model

# 4 heads of 16 and 2 KV heads: the smallest shape that still exercises grouped-query attention and LoRA on every
# projection. A 400-token vocabulary keeps the embedding (400 x 64) small next to the 2 layers.
PLUMBING = ModelShape(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                      vocab_size=400, max_position_embeddings=8192)  # fmt: skip


def build_tiny_model(out_dir: str | Path, *, seed: int = 0) -> str:
    """Write the plumbing tokenizer and random model to `out_dir`; returns the directory as a string."""
    result = write_model(out_dir, PLUMBING, corpus_texts(["builtin"]), seed=seed, provenance={"size": "plumbing"})
    return result.out_dir
