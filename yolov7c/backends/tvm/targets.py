"""Named compile targets → TVM 0.27 ``Target`` objects, plus the (cross) compiler each needs.

TVM 0.27 rejects CLI target strings and silently emits generic code for ``mcpu=native``, so
every target here is a JSON dict with an explicit ``mcpu`` (detected for the host), and CPU
targets carry ``num-cores``, which MetaSchedule requires.
"""
from __future__ import annotations

import functools
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import UserError

AARCH64_TRIPLE = "aarch64-linux-gnu"
AARCH64_HOST: dict[str, Any] = {"kind": "llvm", "mtriple": AARCH64_TRIPLE, "mattr": ["+neon"]}
AARCH64_CXX = "aarch64-linux-gnu-g++"
CUDA_ARCH_DEFAULT = "sm_90"


@dataclass(frozen=True)
class TargetSpec:
    """What a named target compiles to and how its library is linked."""

    name: str
    target: dict[str, Any]
    host: dict[str, Any] | None = None
    cross_cxx: str | None = None        # None: the host's C++ compiler links the library
    runs_here: bool = False             # can this machine load and run the library?
    device: str = "cpu"                 # TVM device type for the runtime
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def tvm_target(self):
        """The ``tvm.target.Target`` (imports tvm)."""
        import tvm
        return tvm.target.Target(self.target, host=self.host) if self.host else \
            tvm.target.Target(self.target)

    def fcompile(self) -> Callable | None:
        """``export_library`` compiler: the cross g++ where needed, else TVM's default."""
        if not self.cross_cxx:
            return None
        from tvm.support import cc  # tvm.contrib.cc moved here in 0.27
        return cc.cross_compiler(self.cross_cxx)


@functools.lru_cache(maxsize=1)
def host_cpu() -> dict[str, Any]:
    """The host CPU as an LLVM target dict with a real ``mcpu`` and ``num-cores``."""
    from tvm.target.detect_target import detect_target_from_device
    t = detect_target_from_device("cpu")
    cfg: dict[str, Any] = {"kind": "llvm", "mcpu": str(t.attrs.get("mcpu", "generic"))}
    if "mtriple" in t.attrs:
        cfg["mtriple"] = str(t.attrs["mtriple"])
    cfg["num-cores"] = physical_cores()
    return cfg


def physical_cores() -> int:
    try:
        import psutil
        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:  # psutil is a tvm extra; fall back to logical CPUs
        return os.cpu_count() or 1


TARGET_NAMES = ("llvm", "aarch64", "cuda", "mali", "opencl", "vulkan")


def resolve(name: str, arch: str | None = None, mcpu: str | None = None,
            num_cores: int | None = None) -> TargetSpec:
    """A :class:`TargetSpec` for a named target; unknown names are a one-line UserError.

    ``llvm`` is this machine's CPU; ``aarch64`` a Linux ARM64 CPU (NEON); ``cuda`` needs
    ``arch`` (default sm_90); ``mali``/``opencl`` are OpenCL kernels with an aarch64 host.
    """
    key = name.strip().lower()
    if key in ("llvm", "x86", "cpu", "host"):
        cfg = dict(host_cpu())
        if mcpu:
            cfg["mcpu"] = mcpu
        if num_cores:
            cfg["num-cores"] = num_cores
        return TargetSpec("llvm", cfg, runs_here=True, notes="host CPU")
    if key in ("aarch64", "arm", "arm64"):
        cfg = dict(AARCH64_HOST, **({"mcpu": mcpu} if mcpu else {}))
        cfg["num-cores"] = num_cores or 4
        return TargetSpec("aarch64", cfg, cross_cxx=AARCH64_CXX, notes="ARM64 Linux CPU")
    if key == "cuda":
        a = arch or CUDA_ARCH_DEFAULT
        if not (a.startswith("sm_") and a[3:].rstrip("a").isdigit()):
            raise UserError(f"--arch {a}: not a CUDA SM architecture; use e.g. sm_80 or sm_90")
        return TargetSpec("cuda", {"kind": "cuda", "arch": a}, host=dict(host_cpu()),
                          device="cuda", notes=f"NVIDIA GPU {a}, x86 host")
    if key in ("mali", "opencl"):
        tgt = {"kind": "opencl", "device": "mali"} if key == "mali" else {"kind": "opencl"}
        return TargetSpec(key, tgt, host=dict(AARCH64_HOST), cross_cxx=AARCH64_CXX,
                          device="opencl", notes="OpenCL GPU, aarch64 host")
    if key == "vulkan":
        return TargetSpec("vulkan", {"kind": "vulkan"}, host=dict(AARCH64_HOST),
                          cross_cxx=AARCH64_CXX, device="vulkan", notes="Vulkan, aarch64 host")
    raise UserError(f"--target {name}: unknown target; use one of {', '.join(TARGET_NAMES)}")


def check_toolchain(spec: TargetSpec) -> None:
    """Fail early, before any work, when the target cannot be built on this machine."""
    if spec.cross_cxx and not shutil.which(spec.cross_cxx):
        raise UserError(f"--target {spec.name}: cross compiler {spec.cross_cxx} not found on "
                        "PATH; install it (Debian: apt install g++-aarch64-linux-gnu)")
    if spec.name == "vulkan":
        import tvm_ffi
        if tvm_ffi.get_global_func("target.build.vulkan", allow_missing=True) is None:
            raise UserError("--target vulkan: this TVM build has no Vulkan/SPIR-V codegen "
                            "(target.build.vulkan missing); use --target mali (OpenCL)")
    if not (spec.cross_cxx or shutil.which(os.environ.get("CXX", "g++"))):
        raise UserError(f"--target {spec.name}: no C++ compiler (g++) to link the library; "
                        "install g++ or set CXX")
