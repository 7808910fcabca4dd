"""Named compile targets → TVM 0.27 ``Target`` objects, plus the (cross) compiler each needs.

TVM 0.27 rejects CLI target strings and silently emits generic code for ``mcpu=native``, so
every target here is a JSON dict with an explicit ``mcpu`` (detected for the host), and CPU
targets carry ``num-cores``, which MetaSchedule requires.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ...errors import UserError

AARCH64_TRIPLE = "aarch64-linux-gnu"
AARCH64_HOST: dict[str, Any] = {"kind": "llvm", "mtriple": AARCH64_TRIPLE, "mattr": ["+neon"]}
AARCH64_CXX = "aarch64-linux-gnu-g++"
CUDA_ARCH_DEFAULT = "sm_90"
# SM versions nvcc 12/13 know; "a"/"f" suffixes (arch-specific features) exist from sm_90 on
CUDA_SM = (50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90, 100, 101, 103, 110, 120,
           121)
# /proc/cpuinfo flag → LLVM feature, for the ISA extensions generated code may use. A library
# is built with ``+f`` for each the host has and ``-f`` for each it lacks (``host_mattr``):
# LLVM's ``mcpu`` alone turns on what that CPU model has, and a VM of the same model may hide
# some (an emeraldrapids VM without avx512_fp16, say), so a library never carries an
# instruction the CPU lacks.
X86_FEATURES = {
    "pni": "sse3", "ssse3": "ssse3", "sse4_1": "sse4.1", "sse4_2": "sse4.2", "popcnt": "popcnt",
    "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c", "bmi1": "bmi", "bmi2": "bmi2",
    "abm": "lzcnt", "movbe": "movbe", "avx512f": "avx512f", "avx512cd": "avx512cd",
    "avx512bw": "avx512bw", "avx512dq": "avx512dq", "avx512vl": "avx512vl",
    "avx512ifma": "avx512ifma", "avx512vbmi": "avx512vbmi", "avx512_vbmi2": "avx512vbmi2",
    "avx512_vnni": "avx512vnni", "avx512_bitalg": "avx512bitalg",
    "avx512_vpopcntdq": "avx512vpopcntdq", "avx512_bf16": "avx512bf16",
    "avx512_fp16": "avx512fp16", "avx_vnni": "avxvnni", "amx_tile": "amx-tile",
    "amx_bf16": "amx-bf16", "amx_int8": "amx-int8", "amx_fp16": "amx-fp16",
    "avx512_vp2intersect": "avx512vp2intersect", "gfni": "gfni", "vaes": "vaes",
    "vpclmulqdq": "vpclmulqdq"}
ARM_FEATURES = {"asimd": "neon", "asimddp": "dotprod", "asimdhp": "fullfp16", "i8mm": "i8mm",
                "bf16": "bf16", "sve": "sve", "sve2": "sve2"}
# the flags recorded with a database: what decides whether its schedules transfer
ISA_FLAGS = tuple(dict.fromkeys([*X86_FEATURES, *ARM_FEATURES, "neon"]))


@dataclass(frozen=True)
class VectorFacts:
    """What a CPU's vector unit offers a schedule: the width class, fp32 lanes per
    register and the number of vector registers (TVM's own ``get_simd_32bit_lanes`` is the
    pattern). Register blocks hold ``accumulators`` of them; the rest take the weights and
    a broadcast input."""

    isa: str            # avx512 / avx2 / avx / sse / neon
    lanes: int
    registers: int

    @property
    def accumulators(self) -> int:
        return self.registers - 4


VECTOR_CLASSES = {"avx512": VectorFacts("avx512", 16, 32), "avx2": VectorFacts("avx2", 8, 16),
                  "avx": VectorFacts("avx", 8, 16), "sse": VectorFacts("sse", 4, 16),
                  "neon": VectorFacts("neon", 4, 32)}
AVX512 = VECTOR_CLASSES["avx512"]


def vector_class(features: Sequence[str], arch: str = "x86_64") -> str:
    """The vector width class of a CPU with these /proc/cpuinfo ``features``."""
    f = set(features)
    if arch.startswith(("aarch64", "arm")):
        return "neon"
    if "avx512f" in f:
        return "avx512"
    if "avx2" in f and "fma" in f:
        return "avx2"
    return "avx" if "avx" in f else "sse"


@functools.lru_cache(maxsize=64)
def _vector_facts(target_json: str) -> VectorFacts:
    import tvm
    from tvm.target import codegen
    t = tvm.target.Target(json.loads(target_json))
    if t.kind.name != "llvm":
        return VECTOR_CLASSES["sse"]
    triple = str(t.attrs.get("mtriple", ""))
    if triple.startswith(("aarch64", "arm")):
        return VECTOR_CLASSES["neon"]
    try:
        has = {f: bool(codegen.target_has_features(f, t)) for f in ("avx512f", "avx2", "fma",
                                                                     "avx")}
    except Exception:  # noqa: BLE001 - an LLVM without the query: assume the smallest
        return VECTOR_CLASSES["sse"]
    return VECTOR_CLASSES[vector_class([f for f, v in has.items() if v])]


def vector_facts(target: Any) -> VectorFacts:
    """:class:`VectorFacts` of a target (a JSON dict or a ``tvm.target.Target``): from its
    ``mattr`` and LLVM's features of its ``mcpu``; NEON for an ARM triple."""
    if not isinstance(target, dict):
        target = json.loads(str(target)) if str(target).startswith("{") else {"kind": "llvm"}
        if target.get("host"):
            target.pop("host")
    keep = {k: target[k] for k in ("kind", "mcpu", "mtriple", "mattr") if k in target}
    return _vector_facts(json.dumps(keep, sort_keys=True))


# TVM target kind → the device type its library runs on
DEVICE_OF_KIND = {"llvm": "cpu", "cuda": "cuda", "opencl": "opencl", "vulkan": "vulkan"}


def device_of(target: dict[str, Any] | str) -> str:
    """The TVM device type a library for ``target`` (a JSON dict, or its string as a
    ``tvm.target.Target`` prints it) runs on: its kind's, CPU for anything else."""
    if isinstance(target, str):
        try:
            target = json.loads(target)
        except ValueError:
            target = {}
    kind = target.get("kind") if isinstance(target, dict) else None
    return DEVICE_OF_KIND.get(kind, "cpu") if isinstance(kind, str) else "cpu"


@dataclass(frozen=True)
class TargetSpec:
    """What a named target compiles to and how its library is linked."""

    name: str
    target: dict[str, Any]
    host: dict[str, Any] | None = None
    cross_cxx: str | None = None        # None: the host's C++ compiler links the library
    runs_here: bool = False             # can this machine load and run the library?
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> str:
        """The TVM device type the library runs on (:func:`device_of`)."""
        return device_of(self.target)

    @property
    def vector(self) -> VectorFacts:
        """The vector unit of the CPU this target's code runs on (the host CPU of a GPU
        target): width class, fp32 lanes, registers."""
        return vector_facts(self.host if self.host else self.target)

    @property
    def vector_lanes(self) -> int:
        return self.vector.lanes

    @property
    def vector_registers(self) -> int:
        return self.vector.registers

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
    """The host CPU as an LLVM target dict: a real ``mcpu``, ``num-cores``, and ``mattr``
    from the host's own ISA flags (:func:`host_mattr`)."""
    from tvm.target.detect_target import detect_target_from_device
    t = detect_target_from_device("cpu")
    cfg: dict[str, Any] = {"kind": "llvm", "mcpu": str(t.attrs.get("mcpu", "generic"))}
    if "mtriple" in t.attrs:
        cfg["mtriple"] = str(t.attrs["mtriple"])
    mattr = host_mattr()
    if mattr:
        cfg["mattr"] = mattr
    cfg["num-cores"] = physical_cores()
    return cfg


def read_cpuinfo() -> str:
    """/proc/cpuinfo ("" where it is missing); the one place the tests fake."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Vendor, architecture, ISA flags and cache size of the first CPU in a cpuinfo text."""
    import platform
    out: dict[str, Any] = {"vendor": "", "flags": set(), "arch": "", "cache_kb": None}
    for line in text.splitlines():
        key, _, val = (s.strip() for s in line.partition(":"))
        if key == "vendor_id" and not out["vendor"]:
            out["vendor"] = val
        elif key == "CPU implementer" and not out["vendor"]:
            out["vendor"] = f"arm-{val}"
        elif key in ("flags", "Features") and not out["flags"]:
            out["flags"] = set(val.split())
            out["arch"] = "x86_64" if key == "flags" else "aarch64"
        elif key == "cache size" and out["cache_kb"] is None:
            m = re.match(r"(\d+)\s*KB", val)
            out["cache_kb"] = int(m[1]) if m else None
    if not out["arch"]:
        out["arch"] = platform.machine()
    if out["arch"] == "aarch64" and "asimd" in out["flags"]:
        out["flags"].add("neon")
    return out


def host_mattr(text: str | None = None) -> list[str]:
    """LLVM ``mattr`` for the host: ``+f`` for each known ISA extension it has, ``-f`` for
    each it lacks ([] when cpuinfo says nothing, e.g. outside Linux)."""
    info = parse_cpuinfo(read_cpuinfo() if text is None else text)
    if not info["flags"]:
        return []
    table = X86_FEATURES if info["arch"] == "x86_64" else ARM_FEATURES
    return [("+" if flag in info["flags"] else "-") + feat for flag, feat in table.items()]


def _llvm_isa(cfg: dict[str, Any]) -> list[str]:
    """The ISA flags (cpuinfo names) LLVM enables for ``cfg``'s mcpu/mattr (a CPU that is
    not this machine, or an old database that recorded only its ``mcpu``)."""
    import tvm
    from tvm.target import codegen
    keep = {k: cfg[k] for k in ("kind", "mcpu", "mtriple", "mattr") if k in cfg}
    try:
        feats = set(codegen.llvm_get_cpu_features(tvm.target.Target(keep)))
    except Exception:  # noqa: BLE001 - an unknown mcpu: LLVM's generic CPU
        return []
    arm = str(keep.get("mtriple", "")).startswith(("aarch64", "arm"))
    table = ARM_FEATURES if arm else X86_FEATURES
    isa = [flag for flag, feat in table.items() if feat in feats]
    return isa + (["neon"] if arm and "asimd" in isa else [])


def cpu_facts(cfg: dict[str, Any] | None = None, cpuinfo: str | None = None) -> dict[str, Any]:
    """What a CPU tuning database is tied to, for the CPU ``cfg`` builds for (default: this
    machine's): ``mcpu``, ``arch``, ``vendor``, the vector class (``vector``: avx512, avx2,
    neon ...), the ISA flags generated code may use (``isa``) and the cache size. For this
    machine the flags come from cpuinfo (``cpuinfo``: a faked text, for tests); for an
    explicitly named ``mcpu`` that is not this machine's, from LLVM's model of that CPU."""
    host = host_cpu()
    cfg = cfg or host
    mcpu = str(cfg.get("mcpu", "generic"))
    arch = "aarch64" if str(cfg.get("mtriple", "")).startswith(("aarch64", "arm")) \
        else "x86_64"
    if mcpu == host["mcpu"] and cfg.get("mtriple") == host.get("mtriple"):
        info = parse_cpuinfo(read_cpuinfo() if cpuinfo is None else cpuinfo)
        if info["flags"]:
            isa = [f for f in ISA_FLAGS if f in info["flags"]]
            return {"mcpu": mcpu, "arch": info["arch"], "vendor": info["vendor"],
                    "vector": vector_class(isa, info["arch"]), "isa": isa,
                    "cache_kb": info["cache_kb"]}
    isa = _llvm_isa(cfg)
    return {"mcpu": mcpu, "arch": arch, "vendor": "", "vector": vector_class(isa, arch),
            "isa": isa, "cache_kb": None}


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
# other spellings of a target, each meaning exactly one thing (docs/backends.md lists them)
TARGET_ALIASES = {"cpu": "llvm", "host": "llvm", "arm64": "aarch64"}
# names a user may try that mean no single target: refused with what to write instead
NOT_TARGETS = {
    "x86": "for this machine's CPU use llvm (add --mcpu NAME to build for another x86 model)",
    "x86_64": "for this machine's CPU use llvm (add --mcpu NAME to build for another x86 "
              "model)",
    "arm": "use aarch64 (64-bit ARM Linux; 32-bit ARM is not supported)",
    "gpu": "name the GPU API: cuda (NVIDIA), mali or opencl (OpenCL), vulkan"}


def resolve(name: str, arch: str | None = None, mcpu: str | None = None,
            num_cores: int | None = None) -> TargetSpec:
    """A :class:`TargetSpec` for a named target; unknown names are a one-line UserError.

    ``llvm`` (aliases ``cpu``, ``host``) is this machine's CPU, built with its own ISA
    flags; with ``mcpu``, another CPU model of the same architecture (LLVM's features of
    it). ``aarch64`` (alias ``arm64``) a Linux ARM64 CPU (NEON); ``cuda`` needs ``arch``
    (default sm_90); ``mali``/``opencl`` are OpenCL kernels with an aarch64 host.
    Ambiguous names (``x86``, ``arm``, ``gpu``) are refused with the name to use.
    """
    key = str(name).strip().lower()
    key = TARGET_ALIASES.get(key, key)
    if key in NOT_TARGETS:
        raise UserError(f"target {name!r}: not a target name; {NOT_TARGETS[key]}", arg="target")
    if key == "llvm":
        cfg = dict(host_cpu())
        if mcpu and mcpu != cfg["mcpu"]:
            cfg["mcpu"] = mcpu          # another CPU model: LLVM's features of it, not ours
            cfg.pop("mattr", None)
        if num_cores:
            cfg["num-cores"] = num_cores
        return TargetSpec("llvm", cfg, runs_here=True, notes="host CPU")
    if key == "aarch64":
        cfg = dict(AARCH64_HOST, **({"mcpu": mcpu} if mcpu else {}))
        cfg["num-cores"] = num_cores or 4
        return TargetSpec("aarch64", cfg, cross_cxx=AARCH64_CXX, notes="ARM64 Linux CPU")
    if key == "cuda":
        a = check_cuda_arch(arch or CUDA_ARCH_DEFAULT)
        # the limits MetaSchedule's GPU rules need (same for every SM from 5.0 on)
        cfg = {"kind": "cuda", "arch": a, "max_threads_per_block": 1024,
               "max_num_threads": 1024, "thread_warp_size": 32,
               "max_shared_memory_per_block": 49152, "registers_per_block": 65536}
        return TargetSpec("cuda", cfg, host=dict(host_cpu()), notes=f"NVIDIA GPU {a}, x86 host")
    if key in ("mali", "opencl"):
        tgt = {"kind": "opencl", "device": "mali"} if key == "mali" else {"kind": "opencl"}
        return TargetSpec(key, tgt, host=dict(AARCH64_HOST), cross_cxx=AARCH64_CXX,
                          notes="OpenCL GPU, aarch64 host")
    if key == "vulkan":
        return TargetSpec("vulkan", {"kind": "vulkan"}, host=dict(AARCH64_HOST),
                          cross_cxx=AARCH64_CXX, notes="Vulkan, aarch64 host")
    raise UserError(f"target {str(name)[:40]!r}: unknown target; use one of "
                    f"{', '.join(TARGET_NAMES)} (aliases: "
                    f"{', '.join(f'{a}={t}' for a, t in TARGET_ALIASES.items())})",
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
