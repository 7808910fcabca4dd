"""prune-aux: IAuxDetect becomes IDetect on the lead inputs; nothing else changes.

The aux head only trains (coarse labels); at inference IAuxDetect reads only its first
``nl`` inputs. Rewiring the head to those inputs leaves the aux convs and every node that fed
only them dead — including E6E's partial aux taps' exclusive layers. The pass only prunes:
the pass manager's dead-code elimination, which runs after every pass, removes what died.
Layers the lead head still reads stay, whatever their index.
"""
from __future__ import annotations

from torch import fx

from ..backends.torch import modules as M
from . import _fx
from .base import Pass, PassResult


def prune_aux(gm: fx.GraphModule) -> PassResult:
    """Swap every IAuxDetect call for an IDetect call on its lead inputs."""
    changes = []
    for node in gm.graph.nodes:
        head = _fx.module(gm, node)
        if not isinstance(head, M.IAuxDetect):
            continue
        packed = len(node.args) == 1 and isinstance(node.args[0], (list, tuple))
        inputs = list(node.args[0]) if packed else list(node.args)
        lead = _fx.new_head(M.IDetect, head)
        lead.load_state_dict({k: v for k, v in head.state_dict().items()
                              if not k.startswith("m2.")})
        gm.add_submodule(str(node.target), lead)
        node.args = (inputs[: head.nl],) if packed else tuple(inputs[: head.nl])
        changes.append(f"{node.target}: IAuxDetect → IDetect on its {head.nl} lead inputs")
    if changes:
        gm.recompile()
    return PassResult(gm, bool(changes), tuple(changes))


PASS = Pass("prune-aux", "eval-mode outputs (the aux head is training-only)", prune_aux)
