"""The main job, end to end: synthetic dataset → a short fine-tuning run of the shipped
checkpoint (``zoo/weights``: yolov7-tiny-n trained on the synthetic set) → report → verified
deploy pipeline → ONNX (onnxruntime) → TVM (llvm), each backend checked against PyTorch on a
synthetic image → ``val`` (pycocotools mAP, equal on every backend; ≥ ``MIN_MAP50`` for the
shipped model) and ``detect`` on every backend it built (≥ 1 correct box per image for the
shipped model; the drawn images are kept).

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
from .eval_settings import VAL_BATCH
from .io_util import write_text_atomic
from .synthetic import synthetic_scene

REL_TOL = 1e-4  # max |backend − torch| / max |torch|, the bound every backend must meet
MAP_TOL = 1e-3  # max mAP@.5:.95 spread between backends on the same set
MIN_MAP50 = 0.5  # the shipped checkpoint's bound on the job's validation images, every backend
MATCH_IOU = 0.5  # a detected box is correct when it overlaps a same-class label this much
DETECT_IMAGES = 4  # validation images drawn by ``detect`` on every backend
FINETUNE_LR = 0.1  # fine-tuning a trained model: lr0 × this, no warmup (a trained head and
                   # the full warmup bias lr of 0.1 would undo what it learned in two steps)
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
    epochs: int = 2                         # the short training run (0: no training)
    train_images: int = 32
    val_images: int = 16
    expect: bool = False                    # the shipped checkpoint: mAP and boxes checked
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
    from .api.training import default_hyp, has_weights, train
    from .train.hyp import load_hyp
    batch = min(8, ctx.train_images)
    hyp = None
    if has_weights(ctx.source):  # fine-tuning: a lower lr, no warmup
        from .api.models import resolve
        hyp = load_hyp(default_hyp(resolve(ctx.source)))
        hyp.update(lr0=hyp["lr0"] * FINETUNE_LR, warmup_epochs=0.0,
                   warmup_bias_lr=hyp["lr0"] * FINETUNE_LR)
    res = train(ctx.source, ctx.data, img=ctx.img, epochs=ctx.epochs, batch=batch, hyp=hyp,
                nc=SYNTH_NC, seed=ctx.seed, out=ctx.out / "train", workers=0,
                nominal_batch=batch, min_warmup_iters=0, threads=1)  # batches of 8 at 128:
    # per-operator overhead dominates, so one thread is as fast, and far faster when shared
    log.info("  loss %.4f → %.4f over %d epochs (%s); best %s", res["first_loss"],
             res["last_loss"], res["epochs"], "fine-tuned" if hyp else "from scratch",
             res["best"])
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
                plots=name == "torch", batch_size=1 if name == "tvm" else VAL_BATCH)
        maps[name] = {"map": r["map"], "map50": r["map50"],
                      "latency_ms": r["speed"]["inference"]}
        log.info("  %-12s mAP@.5 %.4f  mAP@.5:.95 %.4f  %.1f ms/img", name, r["map50"],
                 r["map"], r["speed"]["inference"])
    spread = max(_spread([m["map"] for m in maps.values()]),
                 _spread([m["map50"] for m in maps.values()]))
    if not spread <= MAP_TOL:
        raise CheckFailed(f"val: mAP differs by {spread:.4f} > {MAP_TOL} between "
                          f"backends {maps}")
    low = {k: m["map50"] for k, m in maps.items() if not m["map50"] >= MIN_MAP50}
    if ctx.expect and low:
        raise CheckFailed(f"val: mAP@.5 {low} < {MIN_MAP50} on the {ctx.val_images} "
                          f"validation images (the shipped checkpoint reaches it)")
    return {"backends": maps, "map_spread": spread,
            "min_map50": MIN_MAP50 if ctx.expect else None}


def _spread(values: list[float]) -> float:
    return max(values) - min(values)


def correct_per_image(detections: list, labels: np.ndarray, shape: tuple[int, int],
                      iou: float = MATCH_IOU) -> int:
    """Detections (x1, y1, x2, y2, conf, cls; pixels) that overlap a label of their class
    (``labels``: class, cx, cy, w, h normalized) by at least ``iou``."""
    from .boxes import box_iou, xywhn2xyxy
    d = np.asarray(detections, np.float32).reshape(-1, 6)
    lab = np.asarray(labels, np.float32).reshape(-1, 5)
    if not len(d) or not len(lab):
        return 0
    gt = xywhn2xyxy(lab[:, 1:5], shape[1], shape[0])
    ious = box_iou(d[:, :4], gt.astype(np.float32))
    same = d[:, 5:6].astype(int) == lab[None, :, 0].astype(int)
    return int(((ious >= iou) & same).any(1).sum())


def stage_detect(ctx: Context) -> dict[str, Any]:
    from .api.evaluate import detect
    from .data.dataset import load_dataset
    ds = load_dataset(ctx.data, "val")
    todo = list(range(min(DETECT_IMAGES, len(ds))))
    images = [ds.paths[i] for i in todo]
    found = {}
    for name, src in _built_backends(ctx).items():
        r = detect(src, images, img=ctx.img, out=ctx.out / "detect", name=name, progress=False,
                   data=_val_data(ctx))  # class names on the drawn boxes
        correct = [correct_per_image(x["detections"], ds.labels[i], ds.shapes[i])
                   for i, x in zip(todo, r["results"])]
        found[name] = {"boxes": sum(len(x["detections"]) for x in r["results"]),
                       "correct": sum(correct), "images_with_a_correct_box":
                       sum(c > 0 for c in correct), "images": r["images"],
                       "out_dir": r["out_dir"]}
        log.info("  %-12s %d boxes on %d images, %d correct (IoU ≥ %.1f, right class) → %s",
                 name, found[name]["boxes"], r["images"], sum(correct), MATCH_IOU,
                 r["out_dir"])
        missed = [Path(images[k]).name for k, c in enumerate(correct) if c == 0]
        if ctx.expect and missed:
            raise CheckFailed(f"detect {name}: no correct box on {', '.join(missed)} (drawn "
                              f"in {r['out_dir']})")
    return {"backends": found, "drawn": str(ctx.out / "detect")}


STAGES: list[Stage] = [
    Stage("data", "synthetic dataset (exact boxes)", stage_data),
    Stage("train", "a short training run (OTA loss, EMA) on the synthetic set: fine-tuning "
          "a checkpoint, or from scratch", stage_train, _trains),
    Stage("model", "model (resolve: the trained checkpoint, or seeded random weights)",
          stage_model),
    Stage("report", "report: params and FLOPs, training and deploy form", stage_report),
    Stage("deploy", "deploy pipeline (verified after every pass)", stage_deploy),
    Stage("onnx", "ONNX export + onnxruntime, checked against torch", stage_onnx),
    Stage("tvm", "TVM compile (llvm, untuned) + run, checked against torch", stage_tvm,
          _tvm_installed),
    Stage("val", "val: COCO mAP (pycocotools) on every backend built, equal everywhere",
          stage_val),
    Stage("detect", f"detect: boxes drawn on {DETECT_IMAGES} validation images, on every "
          f"backend built", stage_detect),
]


def default_model() -> Path:
    """The job's default source: the shipped yolov7-tiny-n checkpoint (package data)."""
    from .zoo.narrow import shipped_checkpoint
    return shipped_checkpoint()


def run_e2e(model: Any = None, img: int | None = None, nc: int | None = None,
            out_dir: str | Path = "runs/e2e", with_tvm: bool = True, seed: int = 0,
            stages: list[Stage] | None = None, epochs: int = 2, train_images: int = 32,
            val_images: int = 16) -> dict[str, Any]:
    """Run the stages on any model source (default: the shipped checkpoint, whose mAP@0.5
    and detections are then checked); returns (and writes) the summary. ``img`` defaults to
    the size a checkpoint was trained at, else 320."""
    from .api.args import output_dir
    from .api.models import model_name
    from .api.training import trained_img
    out = output_dir(out_dir, "out")
    out.mkdir(parents=True, exist_ok=True)
    expect = model is None
    if model is None:
        model = default_model()
        if not model.is_file():
            raise UserError(f"{model}: the shipped checkpoint is missing from the install; "
                            f"reinstall (pip install -e .) or give a model", arg="model")
    if isinstance(model, str) and not Path(model).is_file():
        from .api.models import graph_of
        graph_of(model, nc=nc)  # an unknown name fails before the first stage
    if epochs < 0:
        raise UserError(f"epochs {epochs}: give 0 (no training) or more", arg="epochs")
    if img is None:
        img = trained_img(model) or 320
    ctx = Context(model, img, nc, out, seed, with_tvm, epochs, train_images, val_images,
                  expect=expect)
    ctx.label = Path(model_name(model)).stem  # fixed before training replaces the source
    todo = [s for s in (STAGES if stages is None else stages)]
    summary: dict[str, Any] = {"model": model_name(model), "img": img, "steps": {}}
    t_all, c_all = time.perf_counter(), time.process_time()
    for i, st in enumerate(todo, 1):
        if not st.enabled(ctx):
            summary["steps"][st.name] = {"skipped": True}
            continue
        log.info("[%d/%d] %s", i, len(todo), st.title)
        t0, c0 = time.perf_counter(), time.process_time()
        entry = st.run(ctx)
        entry["seconds"] = round(time.perf_counter() - t0, 2)
        entry["cpu_seconds"] = round(time.process_time() - c0, 2)  # all threads
        log.info("  done in %.1f s (CPU %.1f s)", entry["seconds"], entry["cpu_seconds"])
        summary["steps"][st.name] = entry
    if ctx.ref is not None:
        summary["candidates_over_0.25"] = _count_detections(ctx.ref)
    summary["backends"] = _backend_table(summary["steps"])
    summary["seconds"] = round(time.perf_counter() - t_all, 2)
    summary["cpu_seconds"] = round(time.process_time() - c_all, 2)  # all threads
    summary["summary"] = str(out / "summary.json")
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))
    return summary


def _backend_table(steps: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One row per backend: mAP, latency (val's inference ms/img), boxes and drawn images."""
    val = steps.get("val", {}).get("backends", {})
    det = steps.get("detect", {}).get("backends", {})
    return {k: {**val.get(k, {}), **{f: det[k][f] for f in ("boxes", "correct", "out_dir")
                                     if f in det.get(k, {})}}
            for k in list(val) + [k for k in det if k not in val]}


def _count_detections(decoded: np.ndarray, thr: float = 0.25) -> int:
    scores = decoded[0, :, 4:5] * decoded[0, :, 5:]
    return int((scores.max(1) > thr).sum())


__all__ = ["CheckFailed", "Context", "MIN_MAP50", "REL_TOL", "STAGES", "Stage", "UserError",
           "correct_per_image", "default_model", "run_e2e"]
