"""Where MetaSchedule builds and measures candidates.

TVM's ``LocalBuilder`` starts a fresh pool of worker processes for every batch it builds, and
each worker imports TVM before its first build: on a loaded 2-core machine that was minutes
per tuning round, for builds that take ~0.2 s each in-process. :class:`InProcessBuilder`
builds in the tuning process instead (fp32 LLVM code generation, no tensorize; a failing
build is an error result, as in TVM's builder). Measuring stays in TVM's ``LocalRunner``: its
worker persists for the whole run, and it isolates the process from a crashing kernel.
"""
from __future__ import annotations

import os
import shutil
import tempfile


def in_process_builder():
    """A MetaSchedule builder that builds in this process (see the module docstring)."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder

    from ._msbuild import fast_build

    @derived_object
    class InProcessBuilder(PyBuilder):
        def __init__(self) -> None:
            self.dirs: list[str] = []

        def build(self, build_inputs):
            from tvm.support.tar import tar
            out = []
            for bi in build_inputs:
                try:
                    rt = fast_build(bi.mod, bi.target, bi.params)
                    d = tempfile.mkdtemp(prefix="yolov7c-ms-")
                    self.dirs.append(d)
                    path = os.path.join(d, "tvm_tmp_mod." + tar.output_format)
                    rt.export_library(path, fcompile=tar)
                    out.append(BuilderResult(path, None))
                except Exception as e:  # noqa: BLE001 - a bad candidate, not a bad run
                    out.append(BuilderResult(None, f"InProcessBuilder: {type(e).__name__}: "
                                             f"{str(e)[-2000:]}"))
            return out

        def cleanup(self) -> None:
            for d in self.dirs:
                shutil.rmtree(d, ignore_errors=True)
            self.dirs.clear()

    return InProcessBuilder()


def popen_builder(num_workers: int):
    """TVM's LocalBuilder with the fast build function (for targets built on this machine
    but run elsewhere, where the worker isolation costs less than a cross link)."""
    import cloudpickle
    from tvm.s_tir.meta_schedule.builder import LocalBuilder

    from . import _msbuild
    cloudpickle.register_pickle_by_value(_msbuild)  # workers need not import yolov7c
    return LocalBuilder(f_build=_msbuild.fast_build, timeout_sec=120, max_workers=num_workers)


def local_runner():
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, LocalRunner
    # LocalRunner times one candidate at a time in a single, persistent popen worker
    return LocalRunner(timeout_sec=60, evaluator_config=EvaluatorConfig(
        number=3, repeat=1, min_repeat_ms=50))
