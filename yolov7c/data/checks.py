"""Checks of untrusted dataset files, before any of their content is used.

A dataset is the user's input, and it is often a download: every field the loaders read is
checked here for type, range and size, so a malformed file ends in one ``UserError`` that
names the file, the line or record, and the fix — never a traceback, a hang or an
allocation driven by a number in the file. The limits are in ``yolov7c.limits``.
"""
from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from ..errors import UserError, show
from ..limits import MAX_COCO_BYTES, MAX_COCO_RECORDS, MAX_IMAGES, MAX_NC


def read_text(path: Path, limit: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes (a FIFO is not waited on,
    a larger file is not read, bad bytes are named by line)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: not a regular file; give the {what} file itself")
    if st.st_size > limit:
        raise UserError(f"{path}: {st.st_size:,} bytes, more than the {limit:,} a {what} may "
                        f"have; split it or check that it is the right file")
    data = path.read_bytes()[: limit + 1]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte {e.start}); save the {what} "
                        f"as UTF-8") from None


def is_int(v: Any) -> bool:
    """An integer that is not a bool (``True`` is not a class id)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A finite int or float that is not a bool."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and math.isfinite(v))


def names_of(cfg: dict, yaml_path: Path) -> list[str]:
    """The class names of a data YAML: ``names`` as a list, or a dict ``{0: a, 1: b}`` with
    the keys 0..n-1; or ``nc`` alone (``class0`` …). At most ``MAX_NC`` classes."""
    names = cfg.get("names")
    nc = cfg.get("nc")
    if nc is not None and (not is_int(nc) or not 1 <= nc <= MAX_NC):
        raise UserError(f"{yaml_path}: nc {show(nc, 40)}: expected an integer in 1..{MAX_NC}")
    if isinstance(names, dict):
        if len(names) > MAX_NC:
            raise UserError(f"{yaml_path}: names: {len(names):,} classes, more than {MAX_NC}")
        keys = list(names)
        if not all(is_int(k) for k in keys) or sorted(keys) != list(range(len(keys))):
            bad = next((k for k in keys if not is_int(k)), None)
            raise UserError(f"{yaml_path}: names: keys must be the class indices 0..{len(keys) - 1}"
                            + (f" (got {show(bad, 30)})" if bad is not None else
                               f" (got {show(sorted(keys), 60)})")
                            + "; or give a list of names")
        names = [names[k] for k in range(len(keys))]
    if names is None and nc is not None:
        names = [f"class{i}" for i in range(nc)]
    if not isinstance(names, list) or not names:
        raise UserError(f"{yaml_path}: needs 'names' (a list of class names) or 'nc'")
    if len(names) > MAX_NC:
        raise UserError(f"{yaml_path}: names: {len(names):,} classes, more than {MAX_NC}")
    for i, n in enumerate(names):
        if not isinstance(n, (str, int, float)) or isinstance(n, bool):
            raise UserError(f"{yaml_path}: names[{i}] is {show(n, 40)}; class names are "
                            f"strings")
    if nc is not None and nc != len(names):
        raise UserError(f"{yaml_path}: nc={nc} but {len(names)} names; make them agree")
    return [str(n)[:200] for n in names]


def load_json(path: Path) -> Any:
    """A COCO JSON file parsed, size-capped; syntax and nesting errors name the line."""
    text = read_text(path, MAX_COCO_BYTES, "COCO instances JSON")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply; a COCO file is three levels "
                        f"deep") from None


def _records(gt: dict, key: str, path: Path) -> list[dict]:
    v = gt.get(key)
    if not isinstance(v, list):
        raise UserError(f"{path}: '{key}' is {show(v, 40)}, not a list; a COCO instances "
                        f"file has lists 'images', 'annotations' and 'categories'")
    for i, r in enumerate(v):
        if not isinstance(r, dict):
            raise UserError(f"{path}: {key}[{i}] is {show(r, 40)}, not an object")
    return v


def _field(r: dict, key: str, where: str, path: Path, check: Any, expect: str) -> Any:
    if key not in r:
        raise UserError(f"{path}: {where} has no '{key}'; add it ({expect})")
    if not check(r[key]):
        raise UserError(f"{path}: {where}: '{key}' is {show(r[key], 40)}; expected {expect}")
    return r[key]


def _unique_id(record: Any, where: str, path: Path, seen: set[int]) -> int:
    """The record's integer ``id``, refused when an earlier record of its list had it."""
    rid = _field(record, "id", where, path, is_int, "an integer id")
    if rid in seen:
        raise UserError(f"{path}: {where}: id {rid} appears twice; ids are unique")
    seen.add(rid)
    return rid


def check_coco(gt: Any, path: Path) -> tuple[list[dict], list[dict], list[dict]]:
    """Validate a parsed COCO instances file; return (images, annotations, categories).

    Checked: the three lists and their sizes; category ``id`` (unique integers), ``name``;
    image ``id`` (unique integers) and ``file_name`` (a relative path); annotation
    ``image_id``, ``category_id`` (known), ``bbox`` (four finite numbers), ``iscrowd``."""
    if not isinstance(gt, dict) or not {"images", "annotations", "categories"} <= gt.keys():
        raise UserError(f"{path}: a COCO instances file needs 'images', 'annotations' "
                        "and 'categories'")
    images, anns, cats = (_records(gt, k, path) for k in ("images", "annotations",
                                                          "categories"))
    if len(cats) > MAX_NC:
        raise UserError(f"{path}: {len(cats):,} categories, more than {MAX_NC}; "
                        f"a detection set has at most {MAX_NC} classes here")
    if len(images) > MAX_IMAGES or len(images) + len(anns) > MAX_COCO_RECORDS:
        raise UserError(f"{path}: {len(images):,} images and {len(anns):,} annotations, more "
                        f"than the {MAX_COCO_RECORDS:,} records supported; split the file")
    if not cats:
        raise UserError(f"{path}: 'categories' is empty; list the classes")
    seen: set[int] = set()
    for i, c in enumerate(cats):
        _unique_id(c, f"categories[{i}]", path, seen)
        if "name" in c and not isinstance(c["name"], (str, int)):
            raise UserError(f"{path}: categories[{i}]: 'name' is {show(c['name'], 40)}; "
                            f"expected a string")
    img_ids: set[int] = set()
    for i, im in enumerate(images):
        _unique_id(im, f"images[{i}]", path, img_ids)
        fn = _field(im, "file_name", f"images[{i}]", path,
                    lambda v: isinstance(v, str) and v.strip() and "\0" not in v,
                    "the image's file name")
        if Path(fn).is_absolute() or ".." in Path(fn).parts:
            raise UserError(f"{path}: images[{i}]: file_name {show(fn, 60)} leaves the image "
                            f"folder; give a path relative to it")
    for k, a in enumerate(anns):
        where = f"annotations[{k}] (id {show(a.get('id'), 20)})"
        _field(a, "image_id", where, path, is_int, "the id of an image")
        cid = _field(a, "category_id", where, path, is_int, "the id of a category")
        if cid not in seen:
            ids = sorted(seen)
            raise UserError(f"{path}: {where} has category_id {cid}, not in 'categories' "
                            f"(ids {ids[:8]}{'...' if len(ids) > 8 else ''}); fix it")
        _field(a, "bbox", where, path,
               lambda v: isinstance(v, list) and len(v) == 4 and all(map(is_number, v)),
               "[x, y, width, height] in pixels (four finite numbers)")
        if "iscrowd" in a and a["iscrowd"] not in (0, 1):
            raise UserError(f"{path}: {where}: 'iscrowd' is {show(a['iscrowd'], 20)}; "
                            f"expected 0 or 1")
    return images, anns, cats
