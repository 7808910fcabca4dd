"""The ``report`` verb as a function: params / FLOPs / activations of any model source,
training vs deploy, or the zoo table (with latencies from a ``bench`` result file)."""
from __future__ import annotations

import os
from typing import Any, Sequence

from ..errors import UserError
from .args import check_stride, output_path
from .models import graph_of

FORMATS = ("text", "md", "html", "json")


def _by(values: Sequence[str] | str | None) -> list[str]:
    from ..report import GROUP_KEYS
    items = [values] if isinstance(values, str) else list(values or ())
    out = [v.strip() for item in items for v in item.split(",") if v.strip()]
    for v in out:
        if v not in GROUP_KEYS:
            raise UserError(f"by {v!r}: expected one of {', '.join(GROUP_KEYS)}", arg="by")
    return out


def report(source: Any = None, *, img: int | None = None, nc: int | None = None,
           deploy: bool = False, by: Sequence[str] | str | None = None,
           compare_deploy: bool = False, zoo: bool = False,
           bench: str | os.PathLike | None = None, bench_backend: str | None = None,
           fmt: str = "text", out: str | os.PathLike | None = None) -> str:
    """The report text in ``fmt`` (text, md, html, json); with ``out``, also written
    atomically. ``source``: any model source (zoo name, cfg, DSL file, our checkpoint,
    official .pt); ``zoo=True`` reports every zoo model instead, with ``bench`` a result
    file of ``bench(out=...)`` for the latency axis."""
    from ..report import compare_report, model_report, write_output, zoo_report
    if fmt not in FORMATS:
        raise UserError(f"fmt {fmt!r}: expected one of {', '.join(FORMATS)}", arg="fmt")
    dest = output_path(out) if out is not None else None
    if zoo:
        if source is not None or compare_deploy or deploy:
            raise UserError("zoo: reports every model; drop the model source, deploy and "
                            "compare_deploy", arg="zoo")
        if img is not None or by:
            raise UserError("zoo: every model is reported at its own size with fixed tables; "
                            "drop img and by", arg="zoo")
        latency = None
        if bench is not None:
            from ..backends.bench import latencies, read_json
            latency = latencies(read_json(bench), bench_backend)
            if not latency:
                raise UserError(f"bench {bench}: no measured latency"
                                + (f" for backend {bench_backend}" if bench_backend else ""),
                                arg="bench")
        text = zoo_report(fmt, latency)
    else:
        if bench is not None:
            raise UserError("bench: the latencies are for the zoo plot; use it with zoo",
                            arg="bench")
        if source is None:
            raise UserError("source: name a model (e.g. yolov7) or report the zoo",
                            arg="source")
        graph = graph_of(source, nc=nc)
        if img is not None:
            check_stride(img, graph.max_stride)
        if compare_deploy:
            if deploy:
                raise UserError("deploy: compare_deploy already shows both forms; drop deploy",
                                arg="deploy")
            text = compare_report(graph, img, fmt)
        else:
            form = None
            if deploy and graph.form == "training":
                from ..ir.deploy import to_deploy
                graph, form = to_deploy(graph), "deploy"
            text = model_report(graph, img, fmt, _by(by), form)
    if dest is not None:
        write_output(str(dest), text)
    return text


__all__ = ["FORMATS", "report"]
