"""``val`` and ``detect``: any model source on any backend → COCO metrics or drawn detections.

A source becomes a predictor here (the one place that composes resolve, deploy and the
backends): an ``.onnx`` file runs in onnxruntime, a ``.so``/``.tar`` library in TVM, anything
else (zoo name, checkpoint, official ``.pt``, DSL, cfg, module) is resolved to a PyTorch module
and run as is (``backend="torch"``), after the verified deploy pipeline (``"deploy"``), or
exported/compiled on the fly (``"onnxruntime"``, ``"tvm"``: a temporary file, removed after
loading). Pre- and post-processing are the shared ones, so every backend sees the same inputs.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from ..data.batching import to_tensor
from ..data.dataset import IMG_EXTS, load_dataset, read_image
from ..data.letterbox import letterbox
from ..errors import UserError, one_line
from ..eval.draw import draw_boxes, yolo_lines
from ..eval.evaluator import evaluate, resolve_img, to_records, write_outputs
from ..eval.predict import Stopwatch, predict
from ..eval_settings import EvalSettings
from ..nms_settings import DETECT
from ..eval.predictor import OnnxPredictor, TorchPredictor, TvmPredictor
from ..progress import Progress
from ..run_dirs import next_run_dir
from ..io_util import atomic_path

log = logging.getLogger(__name__)

BACKENDS = ("torch", "deploy", "onnxruntime", "tvm")
COCO_NAMES = tuple(n.replace("_", " ") for n in (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe "
    "backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite "
    "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake "
    "chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush").split())


def _weightless(source: Any) -> bool:
    """A source whose weights are random (zoo name, DSL, cfg, Graph): it takes the data's nc."""
    if isinstance(source, nn.Module):
        return False
    if isinstance(source, (str, os.PathLike)):
        p = Path(os.fspath(source))
        return p.suffix.lower() in (".py", ".yaml", ".yml") or not p.is_file()
    return True


def make_predictor(model: Any, *, backend: str | None = None, img: int = 640,
                   nc: int | None = None, seed: int = 0, device: str = "cpu") -> Any:
    """A predictor for ``model`` (see the module docstring); ``img`` is the size an on-the-fly
    ONNX export or TVM build is made for."""
    if backend is not None and backend not in BACKENDS:
        raise UserError(f"backend {backend!r}: choose one of {', '.join(BACKENDS)}",
                        arg="backend")
    if callable(model) and hasattr(model, "fixed_shape") and hasattr(model, "max_batch"):
        return model                                        # already a predictor
    if isinstance(model, (str, os.PathLike)):
        suffix = Path(os.fspath(model)).suffix.lower()
        if suffix == ".onnx":
            _only(backend, "onnxruntime", model)
            return OnnxPredictor(model)
        if suffix in (".so", ".tar"):
            _only(backend, "tvm", model)
            return TvmPredictor(model)
    from .models import deploy, resolve
    module = resolve(model, nc=nc, seed=seed)
    if backend in (None, "torch"):
        return TorchPredictor(module, device)
    module = deploy(module, seed=seed)
    if backend == "deploy":
        return TorchPredictor(module, device, name="deploy")
    img = resolve_img(img, TorchPredictor(module))
    with tempfile.TemporaryDirectory(prefix="yolov7c-") as tmp:
        if backend == "onnxruntime":
            from ..backends.onnx import export_onnx
            path = export_onnx(module, img, Path(tmp) / "model.onnx", dynamic_batch=True)
            return OnnxPredictor(path)
        from ..backends.tvm import compile_model
        log.info("compiling for TVM llvm at %d (untuned: slow inference)", img)
        compile_model(module, "llvm", img, Path(tmp) / "model.so", verbose=False)
        return TvmPredictor(Path(tmp) / "model.so")


def _only(backend: str | None, want: str, model: Any) -> None:
    if backend not in (None, want):
        raise UserError(f"backend {backend}: {model} runs on {want} only", arg="backend")


def val(model: Any, data: str | os.PathLike, *, images: str | os.PathLike | None = None,
        split: str = "val", img: int | None = None, batch_size: int | None = None,
        conf: float | None = None, iou: float | None = None, max_det: int | None = None,
        backend: str | None = None, nc: int | None = None, seed: int = 0,
        out: str | os.PathLike | None = "runs/val", name: str = "exp", plots: bool = True,
        progress: bool = True, rect: bool | None = None, pad: float | None = None,
        device: str = "cpu") -> dict[str, Any]:
    """COCO metrics of ``model`` on ``data`` (a data YAML, or a COCO JSON with ``images``).

    The evaluation settings given win; the others come from :func:`eval_settings` (a
    training checkpoint's own record, else the defaults), so ``val`` of a run's checkpoint
    reproduces the mAP the run reported. Writes ``predictions.json``, ``metrics.json`` and
    the plots to a new run folder under ``out`` (``exp``, ``exp2``, ...; ``out=None`` writes
    nothing). Returns the metrics dict of :func:`yolov7c.eval.evaluate`.
    """
    es = eval_settings(model, img=img, batch=batch_size, conf=conf, iou=iou, max_det=max_det,
                       rect=rect, pad=pad)
    _check_thresholds(es.conf, es.iou, es.max_det)
    ds = load_dataset(data, split, images)
    if nc is None and _weightless(model):
        nc = ds.nc
    pred = make_predictor(model, backend=backend, img=es.img, nc=nc, seed=seed, device=device)
    res = evaluate(pred, ds, **es.evaluate_kw(), out_dir=None, plots=plots, progress=progress,
                   keep_outputs=out is not None)
    if out is not None:  # the run folder is claimed only once there is something to write
        res = write_outputs(next_run_dir(out, name), res, ds, plots)
    return res


def eval_settings(model: Any, **given: Any) -> EvalSettings:
    """The evaluation settings of ``val``: the ``given`` ones (None: not given) over the
    record our training checkpoint ``model`` keeps of its run's validation (said in one
    line), else over the defaults (the official NMS settings, batch ``VAL_BATCH``, the size
    a checkpoint was trained at or 640)."""
    given = {k: v for k, v in given.items() if v is not None}
    from .training import trained_eval
    recorded = trained_eval(model)
    if recorded is None:
        return EvalSettings(**{"img": default_eval_img(model, given.get("img")), **given})
    wins = ", ".join(f"{k} {v}" for k, v in given.items() if getattr(recorded, k) != v)
    log.info("eval settings from the checkpoint: %s%s", recorded.describe(),
             f" (given: {wins})" if wins else "")
    return replace(recorded, **given)


def default_eval_img(model: Any, img: int | None) -> int:
    """``img``, or (None) the size our checkpoint ``model`` was trained at, else 640."""
    if img is not None:
        return img
    from .training import trained_img
    return trained_img(model) or 640


def _check_thresholds(conf: float, iou: float, max_det: int) -> None:
    for v, arg in ((conf, "conf"), (iou, "iou")):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise UserError(f"{arg} {v!r}: a threshold in [0, 1]", arg=arg)
    if isinstance(max_det, bool) or not isinstance(max_det, int) or max_det < 1:
        raise UserError(f"max_det {max_det!r}: a positive number of boxes", arg="max_det")


def list_images(source: str | os.PathLike | Sequence[str]) -> list[Path]:
    """An image file, a folder (its images, sorted), a glob, or a list of these."""
    if isinstance(source, (list, tuple)):
        return [p for s in source for p in list_images(s)]
    text = os.fspath(source)
    p = Path(text)
    if p.is_dir():
        out = sorted(q for q in p.iterdir() if q.suffix.lower() in IMG_EXTS)
    elif any(ch in text for ch in "*?["):
        out = sorted(Path(q) for q in glob.glob(text, recursive=True)
                     if Path(q).suffix.lower() in IMG_EXTS)
    elif p.is_file():
        if p.suffix.lower() not in IMG_EXTS:
            raise UserError(f"source {text}: not an image ({', '.join(IMG_EXTS)}); give an "
                            "image, a folder or a glob", arg="source")
        out = [p]
    else:
        raise UserError(f"source {text}: no such file or folder; give an image, a folder or "
                        "a glob", arg="source")
    if not out:
        raise UserError(f"source {text}: no images found ({', '.join(IMG_EXTS)})",
                        arg="source")
    return out


def _names_for(nc: int, names: Sequence[str] | None, data: Any) -> list[str]:
    if names is not None:
        return list(names)
    if data is not None:
        import yaml
        try:
            cfg = yaml.safe_load(Path(data).read_text())
            got = cfg.get("names") if isinstance(cfg, dict) else None
            if isinstance(got, dict):
                got = [got[k] for k in sorted(got)]
            if isinstance(got, list) and len(got) == nc:
                return [str(n) for n in got]
        except (OSError, yaml.YAMLError):
            pass
        log.warning("data %s: no %d class names there; using class0..", data, nc)
    return list(COCO_NAMES) if nc == len(COCO_NAMES) else [f"class{k}" for k in range(nc)]


def detect(model: Any, source: str | os.PathLike | Sequence[str], *, img: int | None = None,
           conf: float = DETECT.conf, iou: float = DETECT.iou, max_det: int = DETECT.max_det,
           classes: Sequence[int] | None = None, agnostic: bool = False,
           backend: str | None = None, nc: int | None = None, seed: int = 0,
           out: str | os.PathLike | None = "runs/detect", name: str = "exp",
           save_img: bool = True, save_txt: bool = False, save_json: bool = False,
           names: Sequence[str] | None = None, data: str | os.PathLike | None = None,
           progress: bool = True, device: str = "cpu") -> dict[str, Any]:
    """Detections of ``model`` on images (a file, folder, glob or list), boxes in original
    pixels. Writes annotated copies (and with ``save_txt`` YOLO ``labels/*.txt``, with
    ``save_json`` a COCO ``predictions.json``) into a new run folder under ``out``."""
    _check_thresholds(conf, iou, max_det)
    files = list_images(source)
    img = default_eval_img(model, img)
    pred = make_predictor(model, backend=backend, img=img, nc=nc, seed=seed, device=device)
    img = resolve_img(img, pred)
    run = next_run_dir(out, name) if out is not None else None
    watch = Stopwatch()
    nms = dict(conf=conf, iou=iou, max_det=max_det, classes=classes, agnostic=agnostic)
    results, records, label_names = [], [], None
    with Progress(len(files), f"detect {pred.name}", progress and len(files) > 1,
                  unit="img") as bar:
        for f in files:
            one = _detect_one(pred, f, img, watch, nms)
            bar.update()
            if one is None:
                continue
            im, n_out, d = one
            if label_names is None:
                label_names = _names_for(n_out - 5, names, data)
            results.append({"path": str(f), "shape": list(im.shape[:2]),
                            "detections": np.round(d, 3).tolist()})
            if run is not None:
                _save_one(run, f, im, d, label_names, save_img, save_txt)
            if save_json:
                stem = Path(f).stem
                records += to_records(d, int(stem) if stem.isdigit() else stem,
                                      list(range(len(label_names))))
    if files and not results:
        _refuse_unreadable(source, len(files), run)
    res: dict[str, Any] = {"backend": pred.name, "img": img, "conf": conf, "iou": iou,
                           "images": len(results), "skipped": len(files) - len(results),
                           "names": label_names, "results": results,
                           "speed": watch.per_image_ms(max(len(results), 1)),
                           "out_dir": str(run) if run is not None else None}
    if run is not None and save_json:
        with atomic_path(run / "predictions.json", ".json") as tmp:
            tmp.write_text(json.dumps(records))
        res["predictions"] = str(run / "predictions.json")
    return res


def _detect_one(pred: Any, f: Path, img: int, watch: Stopwatch, nms: dict[str, Any]
                ) -> tuple[np.ndarray, int, np.ndarray] | None:
    """(the image, the model's output width, its (n, 6) detections in original pixels) of
    one file; None (with a warning) for an unreadable one."""
    with watch("preprocess"):
        try:
            im = read_image(f)
        except UserError as e:
            log.warning("%s; skipped", e)
            return None
        shape = pred.fixed_shape or (img, img)
        x, r, pad = letterbox(im, shape, stride=pred.stride, auto=pred.fixed_shape is None)
    out_t, (d,) = predict(pred, to_tensor([x]), [r], [pad], [im.shape[:2]], watch=watch, **nms)
    return im, out_t.shape[-1], d


def _refuse_unreadable(source: Any, files: int, run: Path | None) -> None:
    """Every image unreadable: an error, and no empty run folder left behind."""
    if run is not None and not any(run.iterdir()):
        run.rmdir()
    shown = " ".join(map(str, source)) if isinstance(source, (list, tuple)) else source
    raise UserError(f"source {one_line(shown, 80)}: none of its {files} images could be read "
                    "(see the warnings); give readable images", arg="source")


def _save_one(run: Path, f: Path, im: np.ndarray, d: np.ndarray, names: list[str],
              save_img: bool, save_txt: bool) -> None:
    if save_img:
        png = Path(f).suffix.lower() == ".png"
        dest = run / (Path(f).stem + (".png" if png else ".jpg"))
        with atomic_path(dest) as tmp:
            draw_boxes(im, d, names).save(tmp, format="PNG" if png else "JPEG", quality=95)
    if save_txt:
        with atomic_path(run / "labels" / f"{Path(f).stem}.txt", ".txt") as tmp:
            tmp.write_text(yolo_lines(d, im.shape[:2]))
