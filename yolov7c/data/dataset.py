"""Detection datasets: the YOLO layout (a data YAML, ``images/`` + ``labels/``) and COCO JSON.

Both become one :class:`DetectionDataset`: images read lazily (PIL), labels parsed and checked
up front so a bad label stops the run before any work with a message naming the file and line.
Images that are not whole (checked from their headers without decoding pixels, ``headers.py``)
are reported (``logging.warning``) and skipped, so one bad file never stops a long run. COCO
category ids map to contiguous classes ``0..nc-1`` and back (``cat_ids``), which is what a COCO
results file needs. A load's findings are cached beside the labels (``labels/<split>.cache``,
``instances_<split>.cache``; ``label_cache.py``) and reused while no file has changed.
"""
from __future__ import annotations

import logging
import math
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from ..boxes import xywhn2xyxy, xyxy2xywhn
from ..errors import UserError, one_line, show
from ..limits import MAX_DATA_FILE_BYTES, MAX_IMAGES, MAX_LABEL_BYTES, MAX_LABEL_LINES
from .checks import check_coco, is_number, load_json, names_of, read_text
from .headers import image_size, map_ordered
from .label_cache import (Scan, file_key, racy, read_cache, size_limit, stat_or_none,
                          write_cache)

log = logging.getLogger(__name__)

IMG_EXTS = (".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")


@dataclass
class Sample:
    """One image (uint8 (H, W, 3) RGB, original size) and its labels (n, 5): class, cx, cy, w, h
    normalized to [0, 1]."""
    image: np.ndarray
    labels: np.ndarray
    path: str


@dataclass
class DetectionDataset:
    """Images, their labels and class names; ``image_ids`` and ``cat_ids`` are the COCO ids
    (for a YOLO-layout set: the image index and the class index)."""
    paths: list[str]
    labels: list[np.ndarray]
    names: list[str]
    image_ids: list[int]
    cat_ids: list[int]
    shapes: list[tuple[int, int]]            # (H, W) of every image, read from the header
    coco_gt: dict | None = None              # the original COCO JSON (crowd, areas) if any
    source: str = ""
    skipped: list[str] = field(default_factory=list)

    @property
    def nc(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Sample:
        return Sample(read_image(self.paths[i]), self.labels[i], self.paths[i])

    def gt_json(self) -> dict:
        """The ground truth in COCO format (the original JSON for a COCO set)."""
        if self.coco_gt is not None:
            return self.coco_gt
        images, anns = [], []
        for i, (lab, (h, w)) in enumerate(zip(self.labels, self.shapes)):
            images.append({"id": self.image_ids[i], "file_name": Path(self.paths[i]).name,
                           "height": h, "width": w})
            corners = xywhn2xyxy(np.asarray(lab, np.float64)[:, 1:5], w, h).tolist()
            for (c, _, _, bw, bh), (x1, y1, _, _) in zip(lab.tolist(), corners):
                box = [x1, y1, bw * w, bh * h]   # COCO: top-left corner, size
                anns.append({"id": len(anns) + 1, "image_id": self.image_ids[i],
                             "category_id": self.cat_ids[int(c)], "bbox": box,
                             "area": box[2] * box[3], "iscrowd": 0})
        cats = [{"id": cid, "name": n} for cid, n in zip(self.cat_ids, self.names)]
        return {"images": images, "annotations": anns, "categories": cats}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """RGB uint8 (H, W, 3); a file that does not decode is a UserError naming it."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{path}: not a readable image ({e.__class__.__name__}); "
                        "remove or replace it") from None


# --------------------------------------------------------------------------- YOLO layout


def parse_label_file(path: Path, nc: int) -> np.ndarray:
    """``class cx cy w h`` per line, normalized; polygons (``class x1 y1 x2 y2 ...``) become
    their bounding box. Errors name the file and line. At most ``MAX_LABEL_LINES`` boxes
    and ``MAX_LABEL_BYTES`` bytes per file (UTF-8)."""
    rows = []
    for ln, line in enumerate(read_text(path, MAX_LABEL_BYTES, "label").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{ln}"
        if len(rows) >= MAX_LABEL_LINES:
            raise UserError(f"{where}: more than {MAX_LABEL_LINES:,} boxes in one label file; "
                            "check that it is a label file")
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise UserError(f"{where}: not numbers ({line.strip()[:60]!r}); each line is "
                            "'class cx cy w h' normalized to [0, 1]") from None
        if len(vals) != 5 and (len(vals) < 7 or len(vals) % 2 == 0):
            raise UserError(f"{where}: {len(vals)} columns; each line is 'class cx cy w h' "
                            "(5 columns) or a polygon 'class x1 y1 x2 y2 ...'")
        c = vals[0]
        if not math.isfinite(c) or c != int(c) or not 0 <= c < nc:
            raise UserError(f"{where}: class {parts[0]} out of range; the data YAML has nc={nc} "
                            f"(classes 0..{nc - 1})")
        xy = np.asarray(vals[1:], dtype=np.float64)
        if not np.isfinite(xy).all() or (xy < 0).any() or (xy > 1).any():
            raise UserError(f"{where}: coordinates outside [0, 1]; labels must be normalized "
                            "by the image width and height")
        if len(vals) > 5:  # polygon → box
            x, y = xy[0::2], xy[1::2]
            xy = np.array([(x.min() + x.max()) / 2, (y.min() + y.max()) / 2,
                           x.max() - x.min(), y.max() - y.min()])
        rows.append([c, *xy.tolist()])
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def _label_path(img: Path) -> Path:
    """images/.../x.jpg → labels/.../x.txt (the last ``images`` folder in the path)."""
    parts = list(img.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return img.with_suffix(".txt")


def _list_images(entry: str | list, root: Path, yaml_path: Path, key: str) -> list[Path]:
    """A folder, an image list file (.txt) or a list of either → image paths, sorted."""
    entries = entry if isinstance(entry, list) else [entry]
    out: list[Path] = []
    for e in entries:
        if not isinstance(e, (str, int, float)) or isinstance(e, bool) or not str(e).strip():
            raise UserError(f"{yaml_path}: {key}: {show(e, 60)} is not a path; give a folder, "
                            "an image list .txt or a list of them")
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix.lower() in IMG_EXTS)
        elif p.is_file() and p.suffix == ".txt":
            for line in read_text(p, MAX_DATA_FILE_BYTES, "image list").splitlines():
                if line.strip():
                    q = Path(line.strip())
                    out.append(q if q.is_absolute() else p.parent / q)
        elif p.is_file() and p.suffix.lower() in IMG_EXTS:
            out.append(p)
        else:
            raise UserError(f"{yaml_path}: {key}: {one_line(e, 80)} does not exist (resolved to "
                            f"{p}); paths are relative to the YAML's folder or its 'path' key")
        if len(out) > MAX_IMAGES:
            raise UserError(f"{yaml_path}: {key}: more than {MAX_IMAGES:,} images; split the set")
    return out


def _names(cfg: dict, yaml_path: Path) -> list[str]:
    return names_of(cfg, yaml_path)


def load_yolo(yaml_path: Path, split: str) -> DetectionDataset:
    """A dataset in the official layout from its data YAML."""
    try:
        cfg = yaml.safe_load(read_text(yaml_path, MAX_DATA_FILE_BYTES, "data YAML"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{yaml_path}:{mark.line + 1}" if mark else str(yaml_path)
        raise UserError(f"{where}: not valid YAML ({show(getattr(e, 'problem', e), 80)}); "
                        "fix the syntax") from None
    except RecursionError:
        raise UserError(f"{yaml_path}: YAML nested too deeply; a data YAML is a flat "
                        "mapping") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{yaml_path}: a data YAML is a mapping with train, val, nc and names")
    if split not in cfg or cfg[split] is None or cfg[split] == "":
        raise UserError(f"{yaml_path}: no '{split}' entry; add '{split}: images/{split}'")
    names = _names(cfg, yaml_path)
    if not isinstance(cfg.get("path") or ".", str):
        raise UserError(f"{yaml_path}: path is {show(cfg['path'], 40)}; give the dataset "
                        "folder as a string")
    root = Path(str(cfg.get("path") or "."))
    root = root if root.is_absolute() else yaml_path.parent / root
    imgs = _list_images(cfg[split], root, yaml_path, split)
    if not imgs:
        raise UserError(f"{yaml_path}: {split}: no images found under {show(cfg[split], 80)}")
    nc = len(names)
    files = [(str(p), _label_path(p)) for p in imgs]
    started = time.time_ns()
    stats = [(stat_or_none(p), stat_or_none(lp)) for p, lp in files]
    both = [f for (p, lp), (st, lst) in zip(files, stats) for f in ((p, st), (lp, lst))]
    key = file_key(both, "yolo", nc, MAX_LABEL_LINES, MAX_LABEL_BYTES, Image.MAX_IMAGE_PIXELS)
    cache = files[0][1].parent.with_suffix(".cache")       # labels/val/ → labels/val.cache
    limit = size_limit(len(files), sum(ls.st_size for _, ls in stats if _regular(ls)))
    scan = read_cache(cache, key, len(files), limit)
    if scan is None:
        scan = _scan_yolo(files, stats, nc)
        write_cache(cache, key, scan, racy([s for st in stats for s in st], started))
    paths, labels, shapes, skipped = _kept(scan, [p for p, _ in files])
    return DetectionDataset(paths, labels, names, list(range(len(paths))),
                            list(range(nc)), shapes, None, str(yaml_path), skipped)


def _regular(st: os.stat_result | None) -> bool:
    return st is not None and stat.S_ISREG(st.st_mode)


def _scan_yolo(files: list[tuple[str, Path]], stats: list, nc: int) -> Scan:
    """Every label parsed and checked (the first bad one, in image order, raises) and every
    image's size read from its header, on a thread pool."""
    def one(i: int) -> tuple[np.ndarray, tuple[int, int] | None, str | None]:
        (p, lp), (st, lst) = files[i], stats[i]
        lab = parse_label_file(lp, nc) if _regular(lst) else np.zeros((0, 5), np.float32)
        return (lab, *image_size(p, st))
    return _to_scan(map_ordered(one, range(len(files))))


def _to_scan(rows: list[tuple[np.ndarray, tuple[int, int] | None, str | None]]) -> Scan:
    shapes = np.array([hw or (-1, -1) for _, hw, _ in rows], np.int32).reshape(-1, 2)
    return Scan(shapes, [lab if hw else np.zeros((0, 5), np.float32) for lab, hw, _ in rows],
                {i: w for i, (_, _, w) in enumerate(rows) if w})


def _kept(scan: Scan, paths: list[str]) -> tuple[list[str], list[np.ndarray],
                                                 list[tuple[int, int]], list[str]]:
    """The images that decode with their labels and sizes, and the skipped ones (whose
    warnings are logged again on every load, cached or not)."""
    kept, labels, shapes, skipped = [], [], [], []
    for i, (p, (h, w), lab) in enumerate(zip(paths, scan.shapes.tolist(), scan.labels)):
        if i in scan.warnings:
            log.warning("%s", scan.warnings[i])
        if h < 0:
            skipped.append(p)
            continue
        kept.append(p)
        labels.append(lab)
        shapes.append((h, w))
    return kept, labels, shapes, skipped


# --------------------------------------------------------------------------- COCO JSON


def load_coco(json_path: Path, images: str | os.PathLike | None) -> DetectionDataset:
    """A COCO ``instances_*.json`` plus its image folder (default: beside the JSON)."""
    images_, anns, cats = check_coco(load_json(json_path), json_path)  # every field checked
    folder = Path(images) if images is not None else json_path.parent
    if not folder.is_dir():
        raise UserError(f"images {folder}: no such folder; give the COCO image folder")
    gt = _clean_coco(images_, anns, cats)
    cats = sorted(gt["categories"], key=lambda c: c["id"])
    cat_ids = [int(c["id"]) for c in cats]
    cls_of = {cid: i for i, cid in enumerate(cat_ids)}
    by_img: dict[int, list] = {}
    for a in gt["annotations"]:
        if not a["iscrowd"]:
            by_img.setdefault(a["image_id"], []).append(a)
    files = [str(folder / im["file_name"]) for im in gt["images"]]
    started = time.time_ns()
    stats = [stat_or_none(p) for p in files]
    key = file_key(zip(files, stats), "coco", Image.MAX_IMAGE_PIXELS)
    cache = json_path.with_suffix(".cache")              # instances_val.json → .cache
    scan = read_cache(cache, key, len(files), size_limit(len(files), 0))
    if scan is None:
        absent = f"image listed in {json_path.name} is missing"
        scan = _to_scan(map_ordered(
            lambda i: (np.zeros((0, 5), np.float32), *image_size(files[i], stats[i], absent)),
            range(len(files))))
        write_cache(cache, key, scan, racy(stats, started))
    paths, labels, shapes, ids, skipped = [], [], [], [], []
    for i, (im, p, (h, w)) in enumerate(zip(gt["images"], files, scan.shapes.tolist())):
        if i in scan.warnings:
            log.warning("%s", scan.warnings[i])
        if h < 0:
            skipped.append(p)
            continue
        hw = h, w
        rows = []
        for a in by_img.get(im["id"], []):
            x, y, bw, bh = a["bbox"]
            if bw <= 0 or bh <= 0:
                continue
            rows.append([cls_of[a["category_id"]],
                         *xyxy2xywhn(np.array([x, y, x + bw, y + bh], np.float64), w, h)])
        paths.append(p)
        labels.append(np.clip(np.asarray(rows, np.float32).reshape(-1, 5), 0, None))
        shapes.append(hw)
        ids.append(int(im["id"]))
    if not paths:
        raise UserError(f"{json_path}: none of its {len(gt['images'])} images found in {folder}")
    names = [str(c.get("name", c["id"])) for c in cats]
    return DetectionDataset(paths, labels, names, ids, cat_ids, shapes, gt, str(json_path),
                            skipped)


def _clean_coco(images: list[dict], anns: list[dict], cats: list[dict]) -> dict:
    """The checked records with just the fields pycocotools reads, defaults filled in
    (``area`` from the box, ``iscrowd`` 0, unique annotation ids), so evaluation never
    meets a missing key."""
    out_anns = []
    for k, a in enumerate(anns):
        x, y, w, h = (float(v) for v in a["bbox"])
        area = a.get("area")
        out_anns.append({"id": k + 1, "image_id": a["image_id"],
                         "category_id": a["category_id"], "bbox": [x, y, w, h],
                         "area": float(area) if is_number(area) else w * h,
                         "iscrowd": int(a.get("iscrowd", 0))})
    out_images = [{"id": im["id"], "file_name": im["file_name"]} for im in images]
    return {"images": out_images, "annotations": out_anns,
            "categories": [{"id": c["id"], "name": str(c.get("name", c["id"]))} for c in cats]}


def load_dataset(data: str | os.PathLike, split: str = "val",
                 images: str | os.PathLike | None = None) -> DetectionDataset:
    """A data YAML (YOLO layout) or a COCO instances JSON (``images``: its image folder)."""
    p = Path(data)
    if p.is_dir():
        found = sorted(p.glob("*.yaml")) + sorted(p.glob("*.yml"))
        hint = f"give its data YAML, e.g. {found[0]}" if found else \
            "give the data YAML (or COCO instances JSON) inside it"
        raise UserError(f"data {p}: is a folder; {hint}", arg="data")
    if not p.is_file():
        raise UserError(f"data {p}: no such file; give a data YAML or a COCO instances JSON",
                        arg="data")
    if p.suffix.lower() == ".json":
        return load_coco(p, images)
    if p.suffix.lower() in (".yaml", ".yml"):
        return load_yolo(p, split)
    raise UserError(f"data {p}: expected a .yaml data file or a COCO .json", arg="data")
