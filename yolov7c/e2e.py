"""The main job, end to end: zoo model → report → verified deploy pipeline → ONNX
(onnxruntime) → TVM (llvm), each backend checked against PyTorch on a synthetic image.

Every step prints what it did and what it measured; the summary is written as JSON. Any
check over its bound makes the job fail (exit 1) with the step's name.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import zoo
from .errors import UserError
from .io_util import write_text_atomic
from .ir.analysis import analyze
from .ir.deploy import to_deploy
from .synthetic import synthetic_scene

REL_TOL = 1e-4  # max |backend − torch| / max |torch|, the bound every backend must meet


class CheckFailed(RuntimeError):
    """A backend's output differs from PyTorch's by more than its bound."""


def _rel_err(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max abs error, relative to max |ref|): the pass manager's metric, on numpy outputs."""
    from .passes.verify import errors
    return errors([torch.from_numpy(ref)], [torch.from_numpy(out)])


def _step(log: Callable[[str], None], name: str):
    class _Timer:
        def __enter__(self):
            self.t = time.perf_counter()
            log(f"[{name}] ...")
            return self

        def __exit__(self, *exc: Any) -> None:
            self.seconds = time.perf_counter() - self.t
    return _Timer()


def run_e2e(model: str = "yolov7-tiny", img: int = 320, nc: int = 80,
            out_dir: str | Path = "runs/e2e", with_tvm: bool = True, seed: int = 0,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole flow on one zoo model; returns (and writes) the summary."""
    from .backends.onnx import export_onnx, run_onnx
    from .passes import randomize, run_passes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graph = zoo.get(model, nc=nc)
    summary: dict[str, Any] = {"model": model, "img": img, "nc": nc, "steps": {}}

    with _step(log, "report") as t:
        train, dep = analyze(graph, img), analyze(to_deploy(graph), img)
        for form, a in (("training", train), ("deploy", dep)):
            log(f"  {form:<8} params {int(a.params):>12,}  GFLOPs@{img} official "
                f"{float(a.gflops('official')):.3f}  paper {float(a.gflops('paper')):.3f}  "
                f"macs2 {float(a.gflops('macs2')):.3f}")
    summary["steps"]["report"] = {"params": int(train.params), "deploy_params": int(dep.params),
                                  "gflops": float(train.gflops()), "seconds": t.seconds}

    scene = synthetic_scene(img, seed=seed)
    x = torch.from_numpy(scene.image)[None]
    torch.manual_seed(seed)
    from . import build
    net = randomize(build(graph).eval(), x, seed=seed)

    with _step(log, "deploy pipeline (verified after every pass)") as t:
        result = run_passes(net, "deploy", example=x)
        for r in result.records:
            log(f"  {r.name:<14} params {r.params_before:>11,} → {r.params_after:>11,}  "
                f"max abs err {r.max_abs_err:.2e}  rel {r.max_rel_err:.2e}")
    deployed = result.module.eval()
    if result.params != int(dep.params):
        raise CheckFailed(f"deploy pipeline: {result.params} params, the IR deploy form has "
                          f"{int(dep.params)}")
    summary["steps"]["deploy"] = {"params": result.params, "max_rel_err": result.max_rel_err,
                                  "seconds": t.seconds}
    with torch.no_grad():
        ref = deployed(x)[0].numpy()

    with _step(log, "onnx export + onnxruntime") as t:
        onnx_path = export_onnx(deployed, img, out / f"{model}.onnx")
        ort_abs, ort_rel = _rel_err(run_onnx(onnx_path, x)[0], ref)
        log(f"  {onnx_path}: max abs err {ort_abs:.2e}  rel {ort_rel:.2e} (bound {REL_TOL:g})")
    summary["steps"]["onnx"] = {"path": str(onnx_path), "max_abs_err": ort_abs,
                                "max_rel_err": ort_rel, "seconds": t.seconds}
    if ort_rel > REL_TOL:
        raise CheckFailed(f"onnxruntime: relative error {ort_rel:.2e} > {REL_TOL:g}")

    if with_tvm:
        summary["steps"]["tvm"] = _tvm_step(deployed, img, x, ref, out / f"{model}_llvm.so", log)

    boxes = _count_detections(ref)
    log(f"[done] {boxes} candidate boxes with score > 0.25 on the synthetic image "
        f"(random weights); summary: {out / 'summary.json'}")
    summary["candidates_over_0.25"] = boxes
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def _tvm_step(deployed: torch.nn.Module, img: int, x: torch.Tensor, ref: np.ndarray,
              lib_path: Path, log: Callable[[str], None]) -> dict[str, Any]:
    import importlib.util
    if importlib.util.find_spec("tvm") is None:
        log("[tvm] skipped: apache-tvm is not installed (pip install -e '.[tvm]')")
        return {"skipped": "apache-tvm not installed"}
    from .backends.tvm import compile_model, load
    with _step(log, "tvm compile (llvm, untuned) + run") as t:
        compile_model(deployed, "llvm", img, lib_path, verbose=False)
        tvm_abs, tvm_rel = _rel_err(load(lib_path)(x.numpy())[0], ref)
        log(f"  {lib_path}: max abs err {tvm_abs:.2e}  rel {tvm_rel:.2e} (bound {REL_TOL:g}); "
            f"untuned code is slow on CPU: tune with `yolov7c tune`")
    if tvm_rel > REL_TOL:
        raise CheckFailed(f"tvm: relative error {tvm_rel:.2e} > {REL_TOL:g}")
    return {"path": str(lib_path), "max_abs_err": tvm_abs, "max_rel_err": tvm_rel,
            "seconds": t.seconds}


def _count_detections(decoded: np.ndarray, thr: float = 0.25) -> int:
    scores = decoded[0, :, 4:5] * decoded[0, :, 5:]
    return int((scores.max(1) > thr).sum())


__all__ = ["run_e2e", "CheckFailed", "UserError", "REL_TOL"]
