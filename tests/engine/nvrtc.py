"""NVRTC, CUDA's runtime compiler, called through ctypes: compiles the fused kernels to PTX without a GPU or a driver.

The ``nvidia-cuda-nvrtc-cu12`` wheel (a dev dependency on Linux x86-64) ships the library; CuPy compiles with the
same one on a GPU machine. This catches what the host-compiler emulation cannot: CUDA-only syntax and semantics.
"""

from __future__ import annotations

import ctypes
import importlib.util
from collections.abc import Sequence
from pathlib import Path


class NvrtcError(RuntimeError):
    pass


def load() -> ctypes.CDLL:
    """libnvrtc from the nvidia-cuda-nvrtc wheel, else from the system; OSError when neither is there."""
    spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
    candidates = []
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidates += sorted(Path(location, "lib").glob("libnvrtc.so*"))
    candidates = [c for c in candidates if "alt" not in c.name and "builtins" not in c.name]
    for path in [*map(str, candidates), "libnvrtc.so.12", "libnvrtc.so"]:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise OSError("libnvrtc not found (pip install nvidia-cuda-nvrtc-cu12)")


def compile_ptx(library: ctypes.CDLL, source: str, options: Sequence[str]) -> str:
    """PTX of ``source`` compiled with ``options``; NvrtcError with the compiler's log on failure."""
    program = ctypes.c_void_p()
    created = library.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"fused_kernels.cu", 0, None, None)
    check(library, created)
    try:
        encoded = [option.encode() for option in options]
        array = (ctypes.c_char_p * len(encoded))(*encoded)
        result = library.nvrtcCompileProgram(program, len(encoded), array)
        if result != 0:
            size = ctypes.c_size_t()
            library.nvrtcGetProgramLogSize(program, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            library.nvrtcGetProgramLog(program, log)
            raise NvrtcError(log.value.decode(errors="replace"))
        size = ctypes.c_size_t()
        check(library, library.nvrtcGetPTXSize(program, ctypes.byref(size)))
        ptx = ctypes.create_string_buffer(size.value)
        check(library, library.nvrtcGetPTX(program, ptx))
        return ptx.value.decode()
    finally:
        library.nvrtcDestroyProgram(ctypes.byref(program))


def check(library: ctypes.CDLL, result: int) -> None:
    if result != 0:
        library.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise NvrtcError(library.nvrtcGetErrorString(result).decode())
