"""Run folders that never overwrite: ``runs/val/exp``, ``exp2``, ``exp3``, ... as users expect."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import UserError


def next_run_dir(project: str | os.PathLike = "runs/detect", name: str = "exp") -> Path:
    """Create and return the first free ``project/name``, ``name2``, ``name3``, ...; the
    folder is claimed with one ``mkdir`` so two concurrent runs never share it."""
    root = Path(project)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"out {root}: cannot create it ({e.strerror or e})", arg="out") from None
    for k in range(1, 100000):
        p = root / (name if k == 1 else f"{name}{k}")
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue
    raise UserError(f"out {root}: no free run folder name; clean up old runs", arg="out")
