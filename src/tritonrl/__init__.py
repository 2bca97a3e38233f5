"""tritonrl: verify LLM-written Triton kernels against PyTorch references and train on the verdicts."""

__version__ = "0.1.0"
