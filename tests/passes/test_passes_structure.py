"""Structural tests of each pass (before/expected), on user models that are not ours and on
our modules, plus the manager's contract: failures name the pass, pipelines are data."""
from __future__ import annotations

import operator

import pytest
import torch
from torch import fx, nn

import yolov7c
from yolov7c.backends.common import all_finite
from yolov7c.backends.torch import modules as M
from yolov7c.backends.torch.init_weights import randomize_weights as randomize
from yolov7c.passes import PASSES, PIPELINES, Pass, PassError, PassResult, run_passes
from yolov7c.passes import _fx
from yolov7c.passes.dce import dce
from yolov7c.passes.fold_batchnorm import fold_bn
from yolov7c.passes.fold_implicit import fold_implicit
from yolov7c.passes.fuse_repconv import fuse_repconv
from yolov7c.passes.prune_aux_head import prune_aux

# small convs on the shared CI cores: two spinning OpenMP threads make them ~10x slower
pytestmark = pytest.mark.one_thread


class RepVGGBlock(nn.Module):
    """A user's own RepVGG block (torchvision-style names, not ours)."""

    def __init__(self, c: int, identity: bool = True, groups: int = 1) -> None:
        super().__init__()
        self.dense = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=groups, bias=False),
                                   nn.BatchNorm2d(c))
        self.pointwise = nn.Sequential(nn.Conv2d(c, c, 1, groups=groups, bias=False),
                                       nn.BatchNorm2d(c))
        self.skip = nn.BatchNorm2d(c) if identity else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dense(x) + self.pointwise(x)
        return torch.relu(y + self.skip(x) if self.skip is not None else y)


class UserNet(nn.Module):
    """conv→BN→ReLU stem, two RepVGG blocks (one grouped, one without identity), a conv whose
    output is read twice (must not be folded), a residual add (must not be fused)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.rep1, self.rep2 = RepVGGBlock(8, groups=2), RepVGGBlock(8, identity=False)
        self.shared = nn.Conv2d(8, 8, 1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.rep2(self.rep1(self.stem(x)))
        s = self.shared(x)
        return self.bn(s) + s + x


def user_net() -> nn.Module:
    torch.manual_seed(0)
    return randomize(UserNet(), torch.rand(2, 3, 32, 32))


def kinds(gm: nn.Module) -> list[str]:
    return [type(gm.get_submodule(str(n.target))).__name__ if n.op == "call_module"
            else str(n.target) for n in gm.graph.nodes if n.op in ("call_module", "call_function")]


def test_fold_bn_user_model_structure_and_values() -> None:
    net = user_net().eval()
    gm = _fx.trace(net)
    x = torch.rand(1, 3, 32, 32)
    want = net(x)
    out = fold_bn(gm)
    assert out.modified and len(out.changes) == 5  # stem + 2 + 2 branch BNs; not shared's BN
    names = kinds(out.graph_module)
    assert names.count("BatchNorm2d") == 2  # rep1's identity BN and the BN after `shared`
    assert out.graph_module.get_submodule("stem.0").bias is not None
    torch.testing.assert_close(out.graph_module(x), want, rtol=1e-5, atol=1e-5)


def test_fuse_repconv_user_model_structure_and_values() -> None:
    net = user_net().eval()
    x = torch.rand(1, 3, 32, 32)
    want = net(x)
    out = fuse_repconv(_fx.trace(net))
    assert out.modified and len(out.changes) == 2
    gm = out.graph_module
    assert isinstance(gm.rep1.rbr_reparam, nn.Conv2d) and gm.rep1.rbr_reparam.groups == 2
    assert isinstance(gm.rep2.rbr_reparam, nn.Conv2d)
    assert not hasattr(gm.rep1, "dense") and not hasattr(gm.rep2, "pointwise")
    assert kinds(gm).count(str(operator.add)) == 2  # only the residual sum after `shared` left
    torch.testing.assert_close(gm(x), want, rtol=1e-5, atol=1e-5)


def test_fuse_repconv_after_fold_bn_and_repconvn() -> None:
    """Order-independent (branches already folded still fuse); RepConvN = no identity."""
    torch.manual_seed(0)
    net = nn.Sequential(M.RepConv(8, 8, act="silu"), M.RepConv(8, 16, s=2, act="leaky"),
                        M.RepConv(16, 16, identity=False))
    randomize(net, torch.rand(2, 8, 16, 16)).eval()
    x = torch.rand(1, 8, 16, 16)
    gm = fold_bn(_fx.trace(net)).graph_module
    out = fuse_repconv(gm)
    assert len(out.changes) == 3 and "3 branches" in out.changes[0] and "2 branches" in out.changes[2]
    assert {type(m) for m in out.graph_module.modules()} >= {nn.Conv2d}
    assert not any(isinstance(m, nn.BatchNorm2d) for m in out.graph_module.modules())
    torch.testing.assert_close(out.graph_module(x), net(x), rtol=1e-5, atol=1e-5)


def test_fold_implicit_structure() -> None:
    model = yolov7c.build("yolov7-tiny", nc=3)
    gm = _fx.trace(model)
    out = fold_implicit(gm)
    head = out.graph_module.get_submodule(f"model.{len(model.model) - 1}")
    assert type(head) is M.Detect and head.nc == 3 and head.na == 3
    assert not fold_implicit(out.graph_module).modified  # idempotent


def test_prune_aux_structure() -> None:
    """E6E: IAuxDetect → IDetect on the lead inputs; aux convs and aux-only layers go, the
    layers the lead head reads stay (whatever their index)."""
    graph = yolov7c.graph("yolov7-e6e")
    model = yolov7c.build(graph)
    gm = _fx.trace(model)
    head = graph.head
    nl = len(head.attrs["anchors"])
    aux_only = graph.ancestors(head.inputs[nl:]) - graph.ancestors(head.inputs[:nl])
    calls = sum(n.op == "call_module" for n in gm.graph.nodes)
    out = prune_aux(gm)  # the pass alone rewires the head and leaves the aux layers dead ...
    assert sum(n.op == "call_module" for n in out.graph_module.graph.nodes) == calls
    pruned = run_passes(model, ["prune-aux"], verify=False).module  # ... the manager's DCE
    assert type(pruned.get_submodule(f"model.{head.index}")) is M.IDetect
    left = {int(n.target.split(".")[1]) for n in pruned.graph.nodes if n.op == "call_module"}
    assert aux_only and not aux_only & left
    weighted = {n.index for n in graph.nodes if list(model.model[n.index].parameters())}
    assert graph.ancestors(head.inputs[:nl]) & weighted <= left  # the lead keeps every layer
    assert not prune_aux(pruned).modified


def test_dce_removes_dead_and_identity() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.dead, self.ident = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.dead(x)
            return self.ident(self.used(x))
    out = dce(_fx.trace(Net()))
    assert out.modified and kinds(out.graph_module) == ["Conv2d"]
    assert not hasattr(out.graph_module, "dead")
    assert not dce(out.graph_module).modified


def _broken(gm: fx.GraphModule) -> PassResult:
    with torch.no_grad():
        next(m for m in gm.modules() if isinstance(m, nn.Conv2d)).weight.mul_(1.01)
    return PassResult(gm, True)


def test_manager_names_the_pass_that_breaks_equivalence() -> None:
    model = user_net()
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(PassError, match="'break-it' broke equivalence") as e:
        run_passes(model, ["fold-bn", Pass("break-it", "nothing", _broken), "dce"], example=x)
    assert [r.name for r in e.value.result.records] == ["fold-bn", "break-it"]
    assert e.value.result.records[0].max_rel_err <= 1e-4 < e.value.record.max_rel_err


def test_manager_leaves_the_input_model_alone_and_records() -> None:
    model = user_net().eval()
    x = torch.rand(1, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = run_passes(model, "fuse-repconv,fold-bn,dce", example=x)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert [r.name for r in result.records] == ["fuse-repconv", "fold-bn", "dce"]
    assert result.params < result.params_before and result.max_rel_err <= 1e-4
    assert set(PIPELINES["deploy"]) <= set(PASSES)


def test_unknown_pass_is_a_user_error() -> None:
    with pytest.raises(yolov7c.UserError, match="unknown pass 'fold-bnn'"):
        run_passes(user_net(), "fold-bnn", example=torch.rand(1, 3, 32, 32))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_lint_finite_check_finds_one_bad_value_anywhere(bad: float, dtype: torch.dtype) -> None:
    """The lint's finite check (backends.common.all_finite: a float64 sum, the exact test
    only on a miss) sees a lone NaN, +inf or -inf (in a large tensor too); empty and
    all-finite tensors pass."""
    assert _fx.all_finite is all_finite
    for n in (5, 3_000_001):
        t = torch.zeros(n, dtype=dtype)
        assert all_finite(t)
        t[n // 2] = bad
        assert not all_finite(t), (n, bad)
    assert all_finite(torch.zeros(0, dtype=dtype))
