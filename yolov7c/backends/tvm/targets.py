"""Named compile targets → TVM 0.27 ``Target`` objects, plus the (cross) compiler each needs.

TVM 0.27 rejects CLI target strings and silently emits generic code for ``mcpu=native``, so
every target here is a JSON dict with an explicit ``mcpu`` (detected for the host), and CPU
targets carry ``num-cores``, which MetaSchedule requires.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable

from ...errors import UserError

AARCH64_TRIPLE = "aarch64-linux-gnu"
AARCH64_HOST: dict[str, Any] = {"kind": "llvm", "mtriple": AARCH64_TRIPLE, "mattr": ["+neon"]}
AARCH64_CXX = "aarch64-linux-gnu-g++"
CUDA_ARCH_DEFAULT = "sm_90"
# SM versions nvcc 12/13 know; "a"/"f" suffixes (arch-specific features) exist from sm_90 on
CUDA_SM = (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 103, 110, 120,
           121)
# ISA extensions that change which schedules are fast (vector width, FMA, dot products)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq",
             "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "neon",
             "asimd", "sve")


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


def cpu_isa() -> list[str]:
    """The host's vector ISA extensions (from /proc/cpuinfo; empty where it is missing)."""
    try:
        text = open("/proc/cpuinfo", encoding="ascii", errors="replace").read()
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(val.split())
            break
    return [f for f in ISA_FLAGS if f in flags]


def cpu_identity(cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a CPU tuning database is tied to: LLVM ``mcpu`` and the ISA flags (host's, or
    only ``mcpu`` for an explicitly given target that is not this machine)."""
    host = host_cpu()
    mcpu = str((cfg or host).get("mcpu", "generic"))
    return {"mcpu": mcpu, "isa": cpu_isa() if mcpu == host["mcpu"] else []}


def physical_cores() -> int:
    try:
        import psutil
        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:  # psutil is a tvm extra; fall back to logical CPUs
        return os.cpu_count() or 1


def cpu_threads(threads: int | None = None) -> int:
    """Size TVM's CPU thread pool: ``threads``, else ``TVM_NUM_THREADS`` if the user set it,
    else the physical cores; returns the threads the pool runs. Why: TVM's own default halves
    the logical CPUs on x86 (it assumes hyper-threading), so on a 2-core VM without SMT it ran
    one thread: the tuner measured every candidate on one core and the build ran on two. The
    pool's size is read once, when it starts; a later call can only lower it."""
    import tvm
    env = os.environ.get("TVM_NUM_THREADS", "")
    want = threads or (int(env) if env.isdigit() else 0) or physical_cores()
    os.environ["TVM_NUM_THREADS"] = str(want)   # for this process's pool and for workers
    if tvm.get_global_func("runtime.NumThreads")() != want:
        tvm.get_global_func("runtime.config_threadpool")(1, want)
    return int(tvm.get_global_func("runtime.NumThreads")())


def device_present(spec: TargetSpec) -> bool:
    """Does this machine have the device ``spec`` runs on (a GPU for cuda, say)?"""
    if spec.runs_here:
        return True
    if spec.host and spec.host.get("mtriple", "").startswith("aarch64"):
        return False  # an ARM host: this x86 machine cannot run it even with the device
    import tvm
    try:
        return bool(tvm.device(spec.device, 0).exist)
    except Exception:  # noqa: BLE001 - no runtime for that device in this TVM build
        return False


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
        a = check_cuda_arch(arch or CUDA_ARCH_DEFAULT)
        # the limits MetaSchedule's GPU rules need (same for every SM from 5.0 on)
        cfg = {"kind": "cuda", "arch": a, "max_threads_per_block": 1024,
               "max_num_threads": 1024, "thread_warp_size": 32,
               "max_shared_memory_per_block": 49152, "registers_per_block": 65536}
        return TargetSpec("cuda", cfg, host=dict(host_cpu()),
                          device="cuda", notes=f"NVIDIA GPU {a}, x86 host")
    if key in ("mali", "opencl"):
        tgt = {"kind": "opencl", "device": "mali"} if key == "mali" else {"kind": "opencl"}
        return TargetSpec(key, tgt, host=dict(AARCH64_HOST), cross_cxx=AARCH64_CXX,
                          device="opencl", notes="OpenCL GPU, aarch64 host")
    if key == "vulkan":
        return TargetSpec("vulkan", {"kind": "vulkan"}, host=dict(AARCH64_HOST),
                          cross_cxx=AARCH64_CXX, device="vulkan", notes="Vulkan, aarch64 host")
    raise UserError(f"target {name!r}: unknown target; use one of {', '.join(TARGET_NAMES)}",
                    arg="target")


def check_cuda_arch(arch: str) -> str:
    """``arch`` if it is an SM version nvcc knows (sm_90, sm_90a ...), else a one-line error
    (an unknown arch used to reach nvcc, which printed tens of thousands of lines)."""
    m = re.fullmatch(r"sm_(\d{2,3})([af]?)", str(arch).strip())
    ok = m is not None and int(m[1]) in CUDA_SM and (not m[2] or int(m[1]) >= 90)
    if not ok:
        known = ", ".join(f"sm_{v}" for v in CUDA_SM if v >= 70)
        raise UserError(f"arch {str(arch)[:40]!r}: not a CUDA SM architecture; use one of "
                        f"{known} (sm_90a etc. for arch-specific features)", arg="arch")
    return str(arch).strip()


def check_toolchain(spec: TargetSpec) -> None:
    """Fail early, before any work, when the target cannot be built on this machine."""
    if spec.cross_cxx and not shutil.which(spec.cross_cxx):
        raise UserError(f"target {spec.name}: cross compiler {spec.cross_cxx} not found on "
                        "PATH; install it (Debian: apt install g++-aarch64-linux-gnu)",
                        arg="target")
    if spec.name == "vulkan":
        import tvm_ffi
        if tvm_ffi.get_global_func("target.build.vulkan", allow_missing=True) is None:
            raise UserError("target vulkan: this TVM build has no Vulkan/SPIR-V codegen "
                            "(target.build.vulkan missing); use target mali (OpenCL)",
                            arg="target")
    if not (spec.cross_cxx or shutil.which(os.environ.get("CXX", "g++"))):
        raise UserError(f"target {spec.name}: no C++ compiler (g++) to link the library; "
                        "install g++ or set CXX", arg="target")
