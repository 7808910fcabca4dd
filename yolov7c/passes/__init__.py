"""Verified graph passes on torch.fx modules: the deploy pipeline and its parts.

``deploy(model)`` → deploy GraphModule; ``run_passes(model, pipeline)`` → ``PipelineResult``
(module + per-pass records). ``PASSES`` and ``PIPELINES`` are the registries (data).
"""
from __future__ import annotations

from .base import Pass, PassResult
from .manager import (DEFAULT_RTOL, PASSES, PIPELINES, PassError, PassRecord, PipelineResult,
                      deploy, resolve, run_passes)
from .verify import example_input, head_outputs

__all__ = ["DEFAULT_RTOL", "PASSES", "PIPELINES", "Pass", "PassError", "PassRecord",
           "PassResult", "PipelineResult", "deploy", "example_input", "head_outputs",
           "resolve", "run_passes"]
