"""The main job, end to end: synthetic dataset → a short training run → report → verified
deploy pipeline → ONNX (onnxruntime) → TVM (llvm), each backend checked against PyTorch on a
synthetic image → ``val`` (pycocotools mAP, equal on every backend) and ``detect`` on every
backend it built.

The job is a list of stages (``STAGES``), each a function of the shared ``Context`` that
returns its summary entry; a stage that finds a check over its bound raises ``CheckFailed``
(exit 1, naming the stage). Progress goes through ``logging`` (the CLI shows it on stderr);
the summary is written as JSON. New stages (training, detection, evaluation) append to the
list.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import UserError
from .io_util import write_text_atomic
from .synthetic import synthetic_scene

REL_TOL = 1e-4  # max |backend − torch| / max |torch|, the bound every backend must meet
MAP_TOL = 1e-3  # max mAP@.5:.95 spread between backends on the same set
log = logging.getLogger("yolov7c.e2e")


class CheckFailed(RuntimeError):
    """A backend's output differs from PyTorch's by more than its bound."""


@dataclass
class Context:
    """What the stages share: the inputs, and what earlier stages produced."""

    source: Any
    img: int
    nc: int | None
    out: Path
    seed: int = 0
    with_tvm: bool = True
    epochs: int = 3                         # the short training run (0: no training)
    train_images: int = 32
    val_images: int = 8
    data: Path | None = None                # the synthetic data YAML (stage "data")
    label: str = ""                         # artifact file stem: the original model's name
    model: nn.Module | None = None          # training graph, eval mode (stage "model")
    deployed: nn.Module | None = None       # deploy module (stage "deploy")
    x: torch.Tensor | None = None           # the synthetic image batch (1, 3, img, img)
    ref: np.ndarray | None = None           # deployed(x) decoded output, the reference
    files: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The model's name for artifact files (``yolov7-tiny.onnx``), kept after training."""
        if not self.label:
            from .api.models import model_name
            self.label = Path(model_name(self.source)).stem
        return self.label


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    run: Callable[[Context], dict[str, Any]]
    enabled: Callable[[Context], bool] = lambda ctx: True


def _rel_err(out: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max abs error, relative to max |ref|): the pass manager's metric, on numpy outputs."""
    from .passes.verify import errors
    return errors([torch.from_numpy(ref)], [torch.from_numpy(np.asarray(out))])


def _check(name: str, out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    abs_err, rel_err = _rel_err(out, ref)
    log.info("  max abs err %.2e, relative %.2e (bound %g)", abs_err, rel_err, REL_TOL)
    if not rel_err <= REL_TOL:
        raise CheckFailed(f"{name}: relative error {rel_err:.2e} > {REL_TOL:g}")
    return {"max_abs_err": abs_err, "max_rel_err": rel_err}


SYNTH_NC = 3  # classes of the synthetic set the main job trains on


def stage_data(ctx: Context) -> dict[str, Any]:
    from .data.synth import make_synthetic
    root = ctx.out / "synth"
    data = root / "data.yaml"
    if not data.is_file():  # a rerun into the same folder reuses the set (same seed, same set)
        data = make_synthetic(root, train=ctx.train_images, val=ctx.val_images, img=ctx.img,
                              nc=SYNTH_NC, seed=ctx.seed)
    log.info("  %s: %d train / %d val images at %d, %d classes, exact boxes", data,
             ctx.train_images, ctx.val_images, ctx.img, SYNTH_NC)
    ctx.data = data
    return {"data": str(data)}


def _trains(ctx: Context) -> bool:
    return ctx.epochs > 0


def stage_train(ctx: Context) -> dict[str, Any]:
    from .api.training import train
    batch = min(8, ctx.train_images)
    res = train(ctx.source, ctx.data, img=ctx.img, epochs=ctx.epochs, batch=batch,
                nc=SYNTH_NC, seed=ctx.seed, out=ctx.out / "train", workers=0,
                nominal_batch=batch, min_warmup_iters=0)
    log.info("  loss %.4f → %.4f over %d epochs; best %s", res["first_loss"], res["last_loss"],
             res["epochs"], res["best"])
    ctx.source = res["best"]  # every later stage works on the trained weights
    return {k: res[k] for k in ("run", "best", "epochs", "first_loss", "last_loss", "map50",
                                "map", "seconds")}


def stage_model(ctx: Context) -> dict[str, Any]:
    from .api.models import resolve
    ctx.model = resolve(ctx.source, nc=ctx.nc, seed=ctx.seed, img=ctx.img)
    params = sum(p.numel() for p in ctx.model.parameters())
    log.info("  %s, %s params (seeded random weights unless a checkpoint)",
             type(ctx.model).__name__, f"{params:,}")
    scene = synthetic_scene(ctx.img, seed=ctx.seed)
    ctx.x = torch.from_numpy(scene.image)[None]
    return {"params": params}


def stage_report(ctx: Context) -> dict[str, Any]:
    from .ir.analysis import analyze
    from .ir.deploy import to_deploy
    from .passes.verify import ir_graph
    graph = ir_graph(ctx.model)
    if graph is None:
        return {"skipped": "no IR graph"}
    train = analyze(graph, ctx.img)
    dep = analyze(to_deploy(graph), ctx.img) if graph.form == "training" else train
    for form, a in (("training", train), ("deploy", dep)):
        log.info("  %-8s params %12s  GFLOPs@%d official %.3f  paper %.3f  macs2 %.3f", form,
                 f"{int(a.params):,}", ctx.img, float(a.gflops("official")),
                 float(a.gflops("paper")), float(a.gflops("macs2")))
    return {"params": int(train.params), "deploy_params": int(dep.params),
            "gflops": float(train.gflops())}


def stage_deploy(ctx: Context) -> dict[str, Any]:
    from .ir.deploy import to_deploy
    from .passes import run_passes
    from .passes.verify import ir_graph
    result = run_passes(ctx.model, "deploy", example=ctx.x)
    for r in result.records:
        log.info("  %-14s params %11s → %11s  max abs err %.2e  rel %.2e", r.name,
                 f"{r.params_before:,}", f"{r.params_after:,}", r.max_abs_err, r.max_rel_err)
    ctx.deployed = result.module.eval()
    graph = ir_graph(ctx.model)
    if graph is not None and graph.form == "training":
        from .ir.analysis import analyze
        expected = int(analyze(to_deploy(graph), ctx.img).params)
        if result.params != expected:
            raise CheckFailed(f"deploy pipeline: {result.params} params, the IR deploy form "
                              f"has {expected}")
    with torch.no_grad():
        ctx.ref = ctx.deployed(ctx.x)[0].numpy()
    return {"params": result.params, "max_rel_err": result.max_rel_err}


def stage_onnx(ctx: Context) -> dict[str, Any]:
    from .backends.onnx import export_onnx, run_onnx
    path = export_onnx(ctx.deployed, ctx.img, ctx.out / f"{ctx.name}.onnx")
    log.info("  wrote %s", path)
    ctx.files["onnx"] = str(path)
    return {"path": str(path), **_check("onnxruntime", run_onnx(path, ctx.x)[0], ctx.ref)}


def _tvm_installed(ctx: Context) -> bool:
    import importlib.util
    if not ctx.with_tvm:
        return False
    if importlib.util.find_spec("tvm") is None:
        log.info("[tvm] skipped: apache-tvm is not installed (pip install -e '.[tvm]')")
        return False
    return True


def stage_tvm(ctx: Context) -> dict[str, Any]:
    from .backends.tvm import compile_model, load
    lib = ctx.out / f"{ctx.name}_llvm.so"
    compile_model(ctx.deployed, "llvm", ctx.img, lib, verbose=False)
    log.info("  wrote %s (untuned: slow on CPU; `yolov7c tune` makes it fast)", lib)
    ctx.files["tvm"] = str(lib)
    return {"path": str(lib), **_check("tvm", load(lib)(ctx.x.numpy())[0], ctx.ref)}


def _built_backends(ctx: Context) -> dict[str, Any]:
    """Every form of the model the job built, as a model source ``val``/``detect`` take."""
    found = {"torch": ctx.model, "deploy": ctx.deployed, "onnxruntime": ctx.files.get("onnx"),
             "tvm": ctx.files.get("tvm")}
    return {k: v for k, v in found.items() if v is not None}


def _val_data(ctx: Context) -> Path:
    """The synthetic set, as the model sees it: a model with another class count (not trained
    here) is evaluated on the same images with its own ``nc`` (extra classes never match)."""
    nc = ctx.model.nc if hasattr(ctx.model, "nc") else SYNTH_NC
    if nc == SYNTH_NC:
        return ctx.data
    import yaml
    spec = yaml.safe_load(ctx.data.read_text())
    spec.update(path=str(ctx.data.parent), nc=nc,
                names=list(spec["names"]) + [f"unused{i}" for i in range(SYNTH_NC, nc)])
    path = ctx.out / "synth_model_nc.yaml"
    write_text_atomic(path, yaml.safe_dump(spec, sort_keys=False))
    return path


def stage_val(ctx: Context) -> dict[str, Any]:
    from .api.evaluate import val
    data, maps = _val_data(ctx), {}
    for name, src in _built_backends(ctx).items():
        r = val(src, data, img=ctx.img, out=ctx.out / "val", name=name, progress=False,
                plots=name == "torch")
        maps[name] = {"map": r["map"], "map50": r["map50"]}
        log.info("  %-12s mAP@.5 %.4f  mAP@.5:.95 %.4f", name, r["map50"], r["map"])
    spread = max(m["map"] for m in maps.values()) - min(m["map"] for m in maps.values())
    if not spread <= MAP_TOL:
        raise CheckFailed(f"val: mAP@.5:.95 differs by {spread:.4f} > {MAP_TOL} between "
                          f"backends {maps}")
    return {"backends": maps, "map_spread": spread}


def stage_detect(ctx: Context) -> dict[str, Any]:
    from .api.evaluate import detect
    images = [str(p) for p in sorted((ctx.data.parent / "images" / "val").glob("*.png"))[:2]]
    found = {}
    for name, src in _built_backends(ctx).items():
        r = detect(src, images, img=ctx.img, out=ctx.out / "detect", name=name, progress=False)
        found[name] = {"boxes": sum(len(x["detections"]) for x in r["results"]),
                       "out_dir": r["out_dir"]}
        log.info("  %-12s %d boxes on %d images → %s", name, found[name]["boxes"],
                 r["images"], r["out_dir"])
    return {"backends": found}


STAGES: list[Stage] = [
    Stage("data", "synthetic dataset (exact boxes)", stage_data),
    Stage("train", "a short training run (OTA loss, EMA) on the synthetic set", stage_train,
          _trains),
    Stage("model", "model (resolve: the trained checkpoint, or seeded random weights)",
          stage_model),
    Stage("report", "report: params and FLOPs, training and deploy form", stage_report),
    Stage("deploy", "deploy pipeline (verified after every pass)", stage_deploy),
    Stage("onnx", "ONNX export + onnxruntime, checked against torch", stage_onnx),
    Stage("tvm", "TVM compile (llvm, untuned) + run, checked against torch", stage_tvm,
          _tvm_installed),
    Stage("val", "val: COCO mAP (pycocotools) on every backend built, equal everywhere",
          stage_val),
    Stage("detect", "detect: boxes on two validation images, on every backend built",
          stage_detect),
]


def run_e2e(model: Any = "yolov7-tiny", img: int = 320, nc: int | None = None,
            out_dir: str | Path = "runs/e2e", with_tvm: bool = True, seed: int = 0,
            stages: list[Stage] | None = None, epochs: int = 3, train_images: int = 32,
            val_images: int = 8) -> dict[str, Any]:
    """Run the stages on any model source; returns (and writes) the summary."""
    from .api.args import output_dir
    from .api.models import model_name
    out = output_dir(out_dir, "out")
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(model, str) and not Path(model).is_file():
        from .api.models import graph_of
        graph_of(model, nc=nc)  # an unknown name fails before the first stage
    if epochs < 0:
        raise UserError(f"epochs {epochs}: give 0 (no training) or more", arg="epochs")
    ctx = Context(model, img, nc, out, seed, with_tvm, epochs, train_images, val_images)
    ctx.label = Path(model_name(model)).stem  # fixed before training replaces the source
    todo = [s for s in (STAGES if stages is None else stages)]
    summary: dict[str, Any] = {"model": model_name(model), "img": img, "steps": {}}
    t_all = time.perf_counter()
    for i, st in enumerate(todo, 1):
        if not st.enabled(ctx):
            summary["steps"][st.name] = {"skipped": True}
            continue
        log.info("[%d/%d] %s", i, len(todo), st.title)
        t0 = time.perf_counter()
        entry = st.run(ctx)
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        log.info("  done in %.1f s", entry["seconds"])
        summary["steps"][st.name] = entry
    if ctx.ref is not None:
        summary["candidates_over_0.25"] = _count_detections(ctx.ref)
    summary["seconds"] = round(time.perf_counter() - t_all, 2)
    summary["summary"] = str(out / "summary.json")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def _count_detections(decoded: np.ndarray, thr: float = 0.25) -> int:
    scores = decoded[0, :, 4:5] * decoded[0, :, 5:]
    return int((scores.max(1) > thr).sum())


__all__ = ["CheckFailed", "Context", "REL_TOL", "STAGES", "Stage", "UserError", "run_e2e"]
