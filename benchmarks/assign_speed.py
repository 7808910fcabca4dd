"""Loss + label assignment per batch: ours (batched, no n_gt × candidates × nc tensor) vs a
straightforward per-image implementation of the same formula, written here in the official
style (loop over images, loop over ground truths with ``.item()``, the cost built as an
n_gt × candidates × nc tensor).

    python benchmarks/assign_speed.py [--models yolov7 yolov7-tiny yolov7-w6]
        [--targets 10 16 100 500] [--img 640] [--batch 2] [--repeat 5] [--max-gb 4]
        [--json benchmarks/results/assign_speed.json]

Each (model, targets, implementation) runs in its own process on one thread, so the peak
memory (resident high-water mark after the inputs exist, Linux ``VmHWM`` reset through
``clear_refs``) belongs to that call alone. Inputs are random raw head outputs of the model's
shape (forward of the network excluded: only the criterion call is timed) and random boxes.
Values: both sides' (box, obj, cls) are compared; the per-image side runs once more with the
same tie rule as ours (equal costs: earlier candidate first) for that check, because topk's
order among exactly equal costs (duplicate candidates) is unspecified. A per-image run whose
cost tensors would exceed ``--max-gb`` is skipped and its estimate reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import yolov7c  # noqa: E402
from yolov7c.backends.torch import modules as M  # noqa: E402
from yolov7c.train import criterion  # noqa: E402
from yolov7c.train.assign import candidates  # noqa: E402
from yolov7c.boxes import box_iou, ciou, xywh2xyxy  # noqa: E402


# ----- the per-image implementation (official style) ----------------------------------------
def per_image_positives(preds, targets, anchors, strides, img_wh, offset, anchor_t, q,
                        stable_ties=False):
    """Candidates per level (vectorised over targets), then SimOTA image by image, ground
    truth by ground truth, with the full n_gt × candidates × nc class-cost tensor."""
    grids = [(p.shape[2], p.shape[3]) for p in preds]
    cand = candidates(targets, anchors, grids, offset, anchor_t)
    nl, nc = len(preds), preds[0].shape[-1] - 5
    per_level = [[] for _ in range(nl)]
    wh = targets.new_tensor([img_wh[0], img_wh[1], img_wh[0], img_wh[1]])
    for bi in range(preds[0].shape[0]):
        this = targets[targets[:, 0] == bi]
        if this.shape[0] == 0:
            continue
        gxyxy = xywh2xyxy(this[:, 2:6] * wh)
        boxes, p_cls, p_obj, rows = [], [], [], []
        for lvl in range(nl):
            idx = ((cand.b == bi) & (cand.level == lvl)).nonzero()[:, 0]
            b, a, gj, gi = cand.b[idx], cand.a[idx], cand.gj[idx], cand.gi[idx]
            fg = preds[lvl][b, a, gj, gi]
            grid = torch.stack([gi, gj], 1)
            xy = (fg[:, :2].sigmoid() * 2 - 0.5 + grid) * strides[lvl]
            wh_ = (fg[:, 2:4].sigmoid() * 2) ** 2 * anchors[lvl][a] * strides[lvl]
            boxes.append(xywh2xyxy(torch.cat([xy, wh_], -1)))
            p_cls.append(fg[:, 5:])
            p_obj.append(fg[:, 4:5])
            rows.append(idx)
        pbox, rows = torch.cat(boxes), torch.cat(rows)
        if pbox.shape[0] == 0:
            continue
        p_cls, p_obj = torch.cat(p_cls), torch.cat(p_obj)
        iou = box_iou(gxyxy, pbox)
        iou_cost = -torch.log(iou + 1e-8)
        dyn = torch.clamp(torch.topk(iou, min(q, iou.shape[1]), dim=1)[0].sum(1).int(), min=1)
        G, C = iou.shape
        onehot = F.one_hot(this[:, 1].long(), nc).float().unsqueeze(1).repeat(1, C, 1)
        y = (p_cls.float().unsqueeze(0).repeat(G, 1, 1).sigmoid()
             * p_obj.unsqueeze(0).repeat(G, 1, 1).sigmoid()).sqrt()
        cls_cost = F.binary_cross_entropy_with_logits(torch.log(y / (1 - y)), onehot,
                                                      reduction="none").sum(-1)
        cost = cls_cost + 3.0 * iou_cost
        match = torch.zeros_like(cost)
        for g in range(G):
            k = dyn[g].item()
            if stable_ties:
                pos = torch.sort(cost[g], stable=True)[1][:k]
            else:
                pos = torch.topk(cost[g], k=k, largest=False)[1]
            match[g][pos] = 1.0
        multi = match.sum(0) > 1
        if multi.sum() > 0:
            owner = torch.min(cost[:, multi], dim=0)[1]
            match[:, multi] *= 0.0
            match[owner, multi] = 1.0
        fg_mask = match.sum(0) > 0.0
        gt_rows = (targets[:, 0] == bi).nonzero()[:, 0][match[:, fg_mask].argmax(0)]
        rows = rows[fg_mask]
        for lvl in range(nl):
            m = cand.level[rows] == lvl
            per_level[lvl].append((rows[m], gt_rows[m]))
    return cand, per_level


def per_image_loss(outs, targets, crit, img_wh, stable_ties=False):
    """The loss terms of the official code on the per-image assignment."""
    nl = crit.nl
    lead = outs[:nl]
    aux = outs[nl:] if len(outs) == 2 * nl else None
    args = (crit.anchors, crit.strides, img_wh)
    at, q = float(crit.hyp["anchor_t"]), crit.topq
    with torch.no_grad():
        fine = per_image_positives(lead, targets, *args, 0.5, at, q, stable_ties)
        coarse = per_image_positives(lead, targets, *args, 1.0, at, q, stable_ties) if aux else None
    dev = targets.device
    pw = torch.tensor([1.0], device=dev)
    box = obj = cls = torch.zeros(1, device=dev)
    for i in range(nl):
        for preds, assigned, w in ((lead, fine, 1.0), (aux, coarse, 0.25)):
            if preds is None:
                continue
            cand, levels = assigned
            pi = preds[i]
            tobj = torch.zeros_like(pi[..., 0])
            pairs = levels[i]
            if sum(len(r) for r, _ in pairs):
                rows = torch.cat([r for r, _ in pairs])
                gts = torch.cat([g for _, g in pairs])
                b, a, gj, gi = cand.b[rows], cand.a[rows], cand.gj[rows], cand.gi[rows]
                ps = pi[b, a, gj, gi]
                pbox = torch.cat((ps[:, :2].sigmoid() * 2 - 0.5,
                                  (ps[:, 2:4].sigmoid() * 2) ** 2 * crit.anchors[i][a]), 1)
                t = targets[gts]
                tbox = t[:, 2:6] * torch.tensor(pi.shape, device=dev)[[3, 2, 3, 2]]
                tbox[:, :2] -= torch.stack([gi, gj], 1)
                iou = ciou(pbox, tbox)
                box = box + w * (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).type(tobj.dtype)
                if crit.nc > 1:
                    tc = torch.zeros_like(ps[:, 5:])
                    tc[range(len(rows)), t[:, 1].long()] = 1.0
                    cls = cls + w * F.binary_cross_entropy_with_logits(ps[:, 5:], tc,
                                                                       pos_weight=pw)
            obj = obj + w * F.binary_cross_entropy_with_logits(pi[..., 4], tobj,
                                                               pos_weight=pw) * crit.balance[i]
    parts = [box * crit.hyp["box"], obj * crit.hyp["obj"], cls * crit.hyp["cls"]]
    return torch.cat(parts + [sum(parts)])


# ----- one measurement (child process) -------------------------------------------------------
def make_inputs(name: str, img: int, batch: int, per_image: int, seed: int = 0,
                device: str = "cpu"):
    g = yolov7c.graph(name)
    aux = g.head.op == "IAuxDetect"
    nl = len(g.anchors)
    head = (M.IAuxDetect if aux else M.IDetect)(g.nc, g.anchors, [8] * nl * (2 if aux else 1),
                                                g.strides)
    gen = torch.Generator().manual_seed(seed)
    outs = [torch.randn(batch, head.na, img // s, img // s, g.nc + 5, generator=gen)
            for s in list(g.strides) * (2 if aux else 1)]
    wh = torch.rand(batch * per_image, 2, generator=gen) * 0.25 + 0.01
    xy = torch.rand(batch * per_image, 2, generator=gen) * (1 - wh) + wh / 2
    img_idx = torch.arange(batch).repeat_interleave(per_image).float()[:, None]
    cls = torch.randint(g.nc, (batch * per_image, 1), generator=gen).float()
    targets = torch.cat([img_idx, cls, xy, wh], 1)
    hyp = "p6" if aux else ("tiny" if "tiny" in name else "p5")
    crit = criterion(head, hyp, img)
    crit.anchors = crit.anchors.to(device)
    return head, [o.to(device) for o in outs], targets.to(device), crit


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(name: str, per_image: int, impl: str, img: int, batch: int, repeat: int,
          max_gb: float, device: str = "cpu") -> dict:
    torch.set_num_threads(1)
    head, outs, targets, crit = make_inputs(name, img, batch, per_image, device=device)
    cuda = device.startswith("cuda")
    img_wh = (float(img), float(img))
    grids = [(o.shape[2], o.shape[3]) for o in outs[: crit.nl]]
    cand = candidates(targets, crit.anchors, grids, 1.0 if crit.aux else 0.5,
                      float(crit.hyp["anchor_t"]))
    per_img = torch.bincount(cand.b, minlength=batch).max().item()
    est_gb = per_image * per_img * crit.nc * 4 * 6 / 1e9   # ~6 live G×C×nc float tensors
    res = {"model": name, "targets_per_image": per_image, "impl": impl,
           "candidates_per_image": per_img, "nc": crit.nc}
    if impl == "per-image" and est_gb > max_gb:
        res.update(skipped=f"needs ~{est_gb:.1f} GB for its G×C×nc cost tensors "
                           f"(> --max-gb {max_gb:g})")
        return res
    if impl == "ours":
        def call():
            return crit(outs, targets)[1]
    else:
        def call():
            return per_image_loss(outs, targets, crit, img_wh)
    with torch.no_grad():
        call()                                          # warm-up
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        rss0 = _rss_kb("VmRSS")
        can_reset = cuda or _reset_peak()
        times, cpu = [], []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            parts = call()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        if cuda:
            peak = (torch.cuda.max_memory_allocated() - base) / 1024
        else:
            peak = _rss_kb("VmHWM") - rss0 if can_reset else None
        if impl == "per-image":   # the value check with ours' tie rule, untimed
            parts = per_image_loss(outs, targets, crit, img_wh, stable_ties=True)
    res.update(ms_median=statistics.median(times) * 1e3, ms_min=min(times) * 1e3,
               cpu_ms_median=statistics.median(cpu) * 1e3,
               peak_mb=None if peak is None else max(peak, 0) / 1024, repeat=repeat,
               parts=[float(x) for x in parts])
    return res


# ----- driver ----------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["yolov7", "yolov7-tiny", "yolov7-w6"])
    ap.add_argument("--targets", nargs="+", type=int, default=[10, 16, 100, 500])
    ap.add_argument("--img", type=int, default=640)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--max-gb", type=float, default=4.0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (peak = CUDA allocator peak)")
    ap.add_argument("--json", default=str(Path(__file__).parent / "results" / "assign_speed.json"))
    ap.add_argument("--child", nargs=3, metavar=("MODEL", "TARGETS", "IMPL"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        m, n, impl = args.child
        print(json.dumps(child(m, int(n), impl, args.img, args.batch, args.repeat,
                               args.max_gb, args.device)))
        return 0
    from yolov7c.progress import Progress
    # fewest targets first, so an interrupted run still has the small cases
    runs = [(m, n, impl) for n in sorted(args.targets) for m in args.models
            for impl in ("ours", "per-image")]
    rows: list[dict] = []
    out_path = Path(args.json)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with Progress(len(runs), "assign_speed") as bar:
        for m, n, impl in runs:
            rep = args.repeat if impl == "ours" or n <= 100 else max(2, args.repeat // 2)
            if args.device != "cpu":   # CUDA peak comes from the allocator: no process needed
                rows.append(child(m, n, impl, args.img, args.batch, rep, args.max_gb,
                                  args.device))
            else:
                cmd = [sys.executable, __file__, "--child", m, str(n), impl, "--img",
                       str(args.img), "--batch", str(args.batch), "--repeat", str(rep),
                       "--max-gb", str(args.max_gb), "--device", args.device]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    rows.append({"model": m, "targets_per_image": n, "impl": impl,
                                 "skipped": f"failed: {out.stderr.strip().splitlines()[-1:]}"})
                else:
                    rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            out_path.write_text(json.dumps({"partial": True, "runs": rows}, indent=1))
            bar.update()
    table = []
    print(f"{'model':<12} {'tgt/img':>7} {'cand/img':>8} {'ours ms':>9} {'per-img ms':>10} "
          f"{'ours cpu':>9} {'per-img cpu':>11} {'speed-up':>8} {'ours MB':>8} "
          f"{'per-img MB':>10} {'max rel diff':>12}")
    for m in args.models:
        for n in args.targets:
            ours = next(r for r in rows if r["model"] == m and r["targets_per_image"] == n
                        and r["impl"] == "ours")
            base = next(r for r in rows if r["model"] == m and r["targets_per_image"] == n
                        and r["impl"] == "per-image")
            line = {"model": m, "targets_per_image": n,
                    "candidates_per_image": ours.get("candidates_per_image"),
                    "ours_ms": ours.get("ms_median"), "ours_cpu_ms": ours.get("cpu_ms_median"),
                    "ours_peak_mb": ours.get("peak_mb"),
                    "per_image_ms": base.get("ms_median"),
                    "per_image_cpu_ms": base.get("cpu_ms_median"),
                    "per_image_peak_mb": base.get("peak_mb"),
                    "per_image_skipped": base.get("skipped")}
            if "parts" in ours and "parts" in base:
                line["max_rel_diff"] = max(abs(a - b) / max(abs(b), 1e-12)
                                           for a, b in zip(ours["parts"], base["parts"]))
            key = "cpu_ms" if args.device == "cpu" else "ms"   # CPU time: robust to load
            if line[f"ours_{key}"] and line[f"per_image_{key}"]:
                line["speedup"] = line[f"per_image_{key}"] / line[f"ours_{key}"]
            table.append(line)

            def f(v, fmt):
                return format(v, fmt) if isinstance(v, (int, float)) else "-"
            print(f"{m:<12} {n:>7} {f(line['candidates_per_image'], 'd'):>8} "
                  f"{f(line['ours_ms'], '.1f'):>9} {f(line['per_image_ms'], '.1f'):>10} "
                  f"{f(line['ours_cpu_ms'], '.1f'):>9} {f(line['per_image_cpu_ms'], '.1f'):>11} "
                  f"{f(line.get('speedup'), '.1f'):>8} {f(line['ours_peak_mb'], '.0f'):>8} "
                  f"{f(line['per_image_peak_mb'], '.0f'):>10} "
                  f"{f(line.get('max_rel_diff'), '.1e'):>12}"
                  + (f"   per-image skipped: {base['skipped']}" if "skipped" in base else ""))
    result = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "device": (torch.cuda.get_device_name() if args.device.startswith("cuda")
                         else "cpu"),
              "load_avg_at_end": os.getloadavg(), "torch": torch.__version__, "threads": 1,
              "img": args.img, "batch": args.batch, "rows": table, "runs": rows}
    out_path.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
