"""Dataset load time before and after the header-only, threaded, cached loader (issue 21 §7).

    python benchmarks/dataset_load.py [--sets 5000x64,500x640] [--repeats 3]

For each set (``IMAGESxPIXELS``: the issue's 5,000 small images, and 500 at 640 px where a
decode costs what it does on COCO) makes a synthetic YOLO-layout set (``make_synthetic``, in a
temp folder; generation is not timed), then times ``load_dataset`` of it four ways:

- old: the loader as it was before (kept here as the reference): every label parsed, every
  image fully decoded to learn its size, one file after another;
- new cold, 1 thread: headers only (PNG CRCs, JPEG end marker), no cache, one worker;
- new cold: the same on the thread pool (``headers.WORKERS``), writing ``labels/val.cache``;
- new warm: the cache is current, so no image or label file is opened.

Each is the median of ``--repeats`` runs; every way must give the same paths, shapes and labels
(asserted). The files sit in the OS page cache after generation, so this measures CPU and
syscalls, not a cold disk. Writes benchmarks/results/dataset_load.json and prints a table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from yolov7c.data import headers, label_cache, load_dataset, make_synthetic  # noqa: E402
from yolov7c.data.dataset import _label_path, parse_label_file  # noqa: E402
from yolov7c.io_util import write_json_atomic  # noqa: E402


def old_load(data_yaml: Path, nc: int) -> tuple[list[str], list[np.ndarray], list]:
    """The loader before issue 21 §7: serial, every image decoded in full."""
    paths, labels, shapes = [], [], []
    for p in sorted((data_yaml.parent / "images" / "val").iterdir()):
        lp = _label_path(p)
        lab = parse_label_file(lp, nc) if lp.is_file() else np.zeros((0, 5), np.float32)
        with Image.open(p) as im:
            im.load()
            hw = im.height, im.width
        paths.append(str(p))
        labels.append(lab)
        shapes.append(hw)
    return paths, labels, shapes


def timed(fn, repeats: int, before=lambda: None) -> tuple[float, object]:
    ts, out = [], None
    for _ in range(repeats):
        before()
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def bench_set(n: int, img: int, repeats: int) -> dict:
    """Time the four ways on a fresh set of ``n`` images of ``img`` px; print its table."""
    with tempfile.TemporaryDirectory(prefix="yolov7c-load-") as tmp:
        t0 = time.perf_counter()
        y = make_synthetic(Path(tmp) / "set", train=0, val=n, img=img, nc=3, seed=0)
        gen_s = time.perf_counter() - t0
        time.sleep(label_cache.RACY_NS / 1e9)   # files this fresh are not cached (label_cache)
        cache = y.parent / "labels" / "val.cache"
        drop = lambda: cache.unlink(missing_ok=True)  # noqa: E731
        rows = {"old: full decode, serial": timed(lambda: old_load(y, 3), repeats)}
        workers = headers.WORKERS
        headers.WORKERS = 1
        try:
            rows["new cold, 1 thread"] = timed(lambda: load_dataset(y), repeats, drop)
        finally:
            headers.WORKERS = workers
        rows[f"new cold, {workers} threads"] = timed(lambda: load_dataset(y), repeats, drop)
        rows["new warm (cache hit)"] = timed(lambda: load_dataset(y), repeats)
        cache_bytes = cache.stat().st_size
        ref_paths, ref_labels, ref_shapes = rows["old: full decode, serial"][1]
        for name, (_, ds) in list(rows.items())[1:]:
            assert ds.paths == ref_paths and ds.shapes == ref_shapes, name
            assert all(np.array_equal(u, v) for u, v in zip(ds.labels, ref_labels)), name
    old_s = rows["old: full decode, serial"][0]
    print(f"\ndataset load, {n} synthetic {img}px PNG images + labels (median of {repeats}; "
          f"generation {gen_s:.1f} s, not counted; cache {cache_bytes:,} bytes)\n")
    print(f"{'way':<28} {'seconds':>8} {'ms/img':>7} {'vs old':>7}")
    out = []
    for name, (sec, _) in rows.items():
        print(f"{name:<28} {sec:>8.3f} {1000 * sec / n:>7.3f} {old_s / sec:>6.1f}x")
        out.append({"way": name, "seconds": round(sec, 4), "ms_per_image": round(1000 * sec / n, 4),
                    "speedup_vs_old": round(old_s / sec, 2)})
    return {"images": n, "img": img, "workers": workers, "cache_bytes": cache_bytes,
            "rows": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="5000x64,500x640",
                    help="IMAGESxPIXELS, comma-separated (5000x64,500x640)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dataset_load.json"))
    a = ap.parse_args()
    sets = [bench_set(*map(int, s.split("x")), a.repeats) for s in a.sets.split(",")]
    load = os.getloadavg()
    note = (f"shared machine: other work ran at the same time (load average {load[0]:.1f} on "
            f"{os.cpu_count()} CPUs), so the thread pool has little idle CPU to use; files in "
            f"the OS page cache after generation, so no cold-disk time")
    print(f"\n{note}")
    write_json_atomic(a.out, {"sets": sets, "repeats": a.repeats,
                              "loadavg": [round(x, 2) for x in load], "cpus": os.cpu_count(),
                              "python": platform.python_version(), "note": note})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
