"""The compiled per-step loops of the hand-written LSTM and GRU training passes (fused_rnn.cpp), built on first use.

PyTorch compiles the C++ file with the machine's compiler into its extensions folder (about 30 s, once per
machine and version of the file; later processes load the built library). Where that cannot be done, no
compiler, no ninja, or SEQVISION_FUSED_KERNELS=0 in the environment, the Python loops run instead, with the
same results up to float32 rounding, and a warning that says why and what it costs.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from seqvision.errors import SeqvisionWarning

if TYPE_CHECKING:
    import torch

SOURCE = Path(__file__).with_name("fused_rnn.cpp")
SWITCH = "SEQVISION_FUSED_KERNELS"
# -march=native: the library is built on, and for, the machine that runs it. -ffast-math lets gcc call glibc's
# vector expf and tanhf, which the loops need to be faster than ATen's own vectorised operations. gcc keeps to
# 256-bit vectors on AVX-512 CPUs unless told otherwise. -fopenmp: at::parallel_for splits a step's loop across
# ATen's OpenMP threads only when the extension is compiled with OpenMP; it links the libgomp already loaded by torch.
COMPILER_FLAGS = ["-O3", "-march=native", "-mprefer-vector-width=512", "-ffast-math", "-fopenmp"]


# What marks the line of a failed build that names its cause (the compiler's error, a missing program).
CAUSES = ("error:", "not found", "No such file")

_python_loops_forced = False


def fused_kernels() -> ModuleType | None:
    """The compiled module, or None when the Python loops must run (the reason is given once as a warning)."""
    return None if _python_loops_forced else _compiled()


def build_for(model: torch.nn.Module) -> None:
    """Build (or load) the kernels now if `model` runs them, so that the first build's half minute is spent before
    training's first epoch or a server's first request, not inside them."""
    if any(getattr(module, "runs_compiled_loops", False) for module in model.modules()):
        fused_kernels()


@contextlib.contextmanager
def python_loops() -> Iterator[None]:
    """Train with the Python loops inside this block, to compare them with the compiled ones or rule those out."""
    global _python_loops_forced
    saved, _python_loops_forced = _python_loops_forced, True
    try:
        yield
    finally:
        _python_loops_forced = saved


@functools.cache
def _compiled() -> ModuleType | None:
    if os.environ.get(SWITCH, "1") == "0":
        return None
    try:
        return _build()
    except Exception as error:  # compilers and loaders fail in many ways; each means "use the Python loops"
        lines = str(error).strip().splitlines() or [type(error).__name__]
        reason = next((line.strip() for line in lines if any(sign in line for sign in CAUSES)), lines[-1])
        warnings.warn(f"seqvision could not compile its fused LSTM/GRU kernels ({reason}); training those models "
                      f"uses the Python loops, 1.7x to 1.9x slower per step. Install a C++ compiler (apt-get install "
                      f"g++) and ninja (pip install ninja), or set {SWITCH}=0 to silence this.",
                      SeqvisionWarning, stacklevel=3)
        return None


def _build() -> ModuleType:
    from torch.utils import cpp_extension

    name = f"seqvision_fused_rnn_{_machine_tag()}"
    folder = Path(cpp_extension._get_build_directory(name, verbose=False))
    if not (folder / f"{name}.so").is_file():
        print(f"seqvision: compiling the fused LSTM/GRU kernels for this CPU (once, about 30 s) into {folder}",
              file=sys.stderr, flush=True)
    # PyTorch logs a long warning when the compiler is not the one it was built with; the fallback's own warning
    # names the cause in one line.
    with _ninja_on_path(), _quiet_logger("torch.utils.cpp_extension"), _only_builder(folder):
        return cpp_extension.load(name=name, sources=[str(SOURCE)], extra_cflags=COMPILER_FLAGS,
                                  extra_ldflags=["-lmvec", "-fopenmp"], verbose=False)


@contextlib.contextmanager
def _only_builder(folder: Path) -> Iterator[None]:
    """Hold the build folder while PyTorch builds or loads the library in it.

    PyTorch takes the folder with a file named `lock` that it deletes when done; a process killed while it holds
    it (a scheduler's SIGTERM, kill -9, the OOM killer) leaves the file behind, and every later load, even of a
    library already built, waits for it to go, silently and forever. An flock is dropped by the kernel however
    its process dies, so a `lock` file found while holding it is a dead build's, and is removed."""
    with open(folder / "seqvision.flock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        (folder / "lock").unlink(missing_ok=True)
        yield


def _machine_tag() -> str:
    """A short hash of the CPU's instruction-set flags and torch's version: a library built with -march=native for
    one CPU is never loaded on another that shares the extensions folder (a network home directory, a container
    image), nor one built against another torch, whose C++ interface differs."""
    import torch

    flags = ""
    if Path("/proc/cpuinfo").is_file():
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    return hashlib.sha256(f"{flags}\n{torch.__version__}".encode()).hexdigest()[:10]


@contextlib.contextmanager
def _ninja_on_path() -> Iterator[None]:
    """PyTorch runs `ninja` from PATH; the ninja package that seqvision depends on puts it in the environment's
    bin folder, which is not on PATH when the environment's python is run without activating it."""
    saved = os.environ.get("PATH", "")
    if shutil.which("ninja") is None:
        with contextlib.suppress(ImportError):
            import ninja

            os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, saved])
    try:
        yield
    finally:
        os.environ["PATH"] = saved


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
