"""MetaSchedule builder function for the popen workers, pickled by value (no yolov7c import).

TVM's default build imports ``tvm.s_tir.tensor_intrin`` in every fresh worker, which takes
~20 s on a 2-core machine and hits the 30 s builder timeout; fp32 without tensorization does
not need it, so this is the default build minus that import.
"""
from __future__ import annotations


def fast_build(mod, target, _params):
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm_build(mod, target=target)
