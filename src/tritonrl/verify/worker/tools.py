"""The programs Triton runs while it compiles, by real path and argument shape; the guard lets nothing else start.

Measured on an H100 (Triton 3.6, every Popen of a first compile): `/sbin/ldconfig -p`, `file -b <python>` (through
platform.architecture()), `$CC <tmp>/cuda_utils.c|__triton_launcher.c -O3 -shared -fPIC -Wno-psabi -o <so> -l.. -L..
-I..`, and the bundled `ptxas` (`--version`, or `-lineinfo -v --gpu-name=sm_90a <ptx> -o <cubin>`); Triton's knobs
also ask `cuobjdump`/`nvdisasm` for `--version`. A deny-list of dangerous names (the rule before this one) missed
`ld-linux-x86-64.so.2 /bin/sh`, `rbash`, `taskset` and `gcc -wrapper`: a candidate that hands Triton a C-callable
heuristic picks both the program and its arguments, with only Triton's frames around the call. So the rule is an
allow-list, fixed when the worker starts (before any candidate code): real paths, so a symlink's name proves nothing,
and for the C compiler, the only tool here that can run another program, the argument shape of Triton's own build.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence

# What triton.runtime.build passes to $CC, and nothing that loads or runs other code (-wrapper, -B, -fplugin,
# -specs, @response files, -Wl,... for the linker).
_CC_FLAG = re.compile(r"-O[0-3s]?|-shared|-fPIC|-Wno-[\w-]+|-o|-l:?[\w.+-]+|-[LI]/\S+")
_NVIDIA_TOOL_ENV = ("TRITON_PTXAS_PATH", "TRITON_PTXAS_BLACKWELL_PATH", "TRITON_CUOBJDUMP_PATH", "TRITON_NVDISASM_PATH")


def _real(path: str | None) -> str | None:
    return os.path.realpath(path) if path and os.path.isfile(path) else None


class TritonTools:
    """Triton's programs on this machine, resolved once from the worker's starting environment."""

    def __init__(self, environ: Mapping[str, str], triton_dir: str | None) -> None:
        self.path = environ.get("PATH", os.defpath)
        bundled = os.path.join(triton_dir, "backends", "nvidia", "bin") if triton_dir else ""
        listed = [os.path.join(bundled, n) for n in sorted(os.listdir(bundled))] if os.path.isdir(bundled) else []
        self.nvidia = {r for p in [*listed, *(environ.get(v) for v in _NVIDIA_TOOL_ENV)] if (r := _real(p))}
        compilers = [environ.get("CC"), "gcc", "clang", "cc"]
        self.cc = {r for c in compilers if c and (r := _real(self.resolve(c)))}
        self.ldconfig = {r for p in ("/sbin/ldconfig", self.resolve("ldconfig")) if (r := _real(p))}
        self.file = {r} if (r := self.real("file")) else set()

    def resolve(self, program: str) -> str | None:
        """`program` as Popen would find it with the starting PATH (a name with a slash is a path already)."""
        return program if os.sep in program else shutil.which(program, path=self.path)

    def real(self, program: str) -> str | None:
        """The real path of the file Popen would run for `program`; None when there is none."""
        return _real(self.resolve(program))

    def refusal(self, program: str, argv: Sequence[str]) -> str | None:
        """None when Triton runs exactly this; else why not (for the message)."""
        real, rest = self.real(program), [str(a) for a in argv[1:]]
        if real is None:
            return f"{program!r} is not a program Triton runs"
        if real in self.nvidia:
            return None  # ptxas & co. run no other program, whatever their arguments
        if real in self.cc:
            shape = all(_CC_FLAG.fullmatch(a) or not a.startswith(("-", "@")) for a in rest)
            if shape and any(a.endswith(".c") for a in rest):
                return None
            return f"{program} {' '.join(rest)[:200]!r} is not the shape of Triton's C build"
        if real in self.ldconfig:
            return None if rest == ["-p"] else f"ldconfig {rest!r} is not Triton's `ldconfig -p`"
        if real in self.file:
            if len(rest) == 2 and rest[0] == "-b" and not rest[1].startswith("-"):
                return None
            return f"file {rest!r} is not platform.architecture()'s `file -b <python>`"
        return f"{program!r} ({real}) is not a program Triton runs"

    def first_executable(self, candidates: Sequence[str | bytes]) -> str | None:
        """The program `_posixsubprocess.fork_exec` will run: the first of its candidate paths that exists."""
        for c in candidates:
            path = os.fsdecode(c)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return os.path.realpath(path)
        return None
