"""Where MetaSchedule builds and measures candidates.

TVM's ``LocalBuilder`` starts a fresh pool of worker processes for every batch it builds, and
each worker imports TVM before its first build: on a loaded 2-core machine that was minutes
per tuning round, for builds that take ~0.2 s each in-process; ``LocalRunner``'s one worker
took 2.5 min to start there. So by default, for the host CPU, candidates are built and
timed in the tuning process (fp32 LLVM code, no tensorize; a failing build or run is an
error result, as in TVM's workers). The price: a candidate kernel that crashes would end the
run, and the database keeps every round committed before it (resume continues). Targets
measured elsewhere (RPC) keep TVM's pooled workers.
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


def in_process_runner(number: int = 3, min_repeat_ms: int = 50):
    """A MetaSchedule runner that times candidates in this process (host CPU only)."""
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import (EvaluatorConfig, PyRunner, PyRunnerFuture,
                                                RunnerResult)
    from tvm.s_tir.meta_schedule.runner.utils import (alloc_argument_common,
                                                      run_evaluator_common)

    @derived_object
    class DoneFuture(PyRunnerFuture):
        def __init__(self, costs, error) -> None:
            super().__init__()
            self.costs, self.error = costs, error

        def done(self) -> bool:
            return True

        def result(self):
            return RunnerResult(self.costs, self.error)

    cfg = EvaluatorConfig(number=number, repeat=1, min_repeat_ms=min_repeat_ms)
    fill = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure", allow_missing=True)

    @derived_object
    class InProcessRunner(PyRunner):
        def run(self, runner_inputs):
            futures = []
            for ri in runner_inputs:
                try:
                    rt = tvm.runtime.load_module(str(ri.artifact_path))
                    dev = tvm.runtime.device(str(ri.device_type), 0)
                    args = alloc_argument_common(
                        fill, dev, tuple(a.as_json() for a in ri.args_info), 1)
                    futures.append(DoneFuture(run_evaluator_common(rt, dev, cfg, args), None))
                except Exception as e:  # noqa: BLE001 - a bad candidate, not a bad run
                    futures.append(DoneFuture(None, f"InProcessRunner: {type(e).__name__}: "
                                              f"{str(e)[-2000:]}"))
            return futures

    return InProcessRunner()
