"""Infrastructure errors. A candidate's failure is data (a Verdict); these are raised only when the harness
itself cannot do its job: a malformed task, a worker that cannot start, an invalid configuration."""

from __future__ import annotations


class TritonRLError(Exception):
    """Base class. Messages are meant for users: say what was wrong and how to fix it."""


class TaskError(TritonRLError):
    """A task (reference) file is malformed, or its reference cannot run."""


class SandboxError(TritonRLError):
    """The sandboxed worker could not be started or spoke an unexpected protocol for a reason that is not the
    candidate's doing (e.g. the interpreter is missing)."""


class WorkerLostError(SandboxError):
    """A worker ended before it was ready: no candidate code ran, so verifying again with a fresh worker is safe."""


class ConfigError(TritonRLError):
    """An invalid configuration value."""
