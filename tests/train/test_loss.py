"""The training loss: parity with the official ComputeLossOTA on the shared fixture,
invariances, gradients, the aux path on a small DSL model, hyp presets and bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import yolov7c
from yolov7c.backends.torch import modules as M
from yolov7c.train import criterion, load_hyp, save_hyp, scale_hyp

ANCH3 = [[6, 8, 10, 18, 20, 14], [18, 37, 38, 28, 36, 73], [71, 55, 96, 121, 120, 100]]


def test_official_loss_parity_tiny(shared):
    """yolov7c.criterion(model, 'tiny', 640) = official ComputeLossOTA (rel 1e-4)."""
    from yolov7c.backends.torch.official import import_official
    model = import_official(shared("fixtures", "yolov7-tiny-loss.official.pt")).float().train()
    want = json.loads(shared("fixtures", "yolov7-tiny-loss.official.expected.json").read_text())
    batch = np.load(shared("fixtures", "loss-batch.npz"))
    imgs, targets = torch.from_numpy(batch["imgs"]), torch.from_numpy(batch["targets"])
    assert model.detect.anchors.tolist() == want["anchors_grid_units"]
    crit = criterion(model, "tiny", 640)
    for k, v in want["hyp_scaled"].items():
        assert crit.hyp[k] == pytest.approx(v), k
    with torch.no_grad():  # gradients are checked on small heads below; this is the values
        outputs = model(imgs)
    loss, parts = crit(outputs, targets, imgs)
    assert loss.shape == (1,) and parts.shape == (4,)
    assert loss.item() == pytest.approx(want["loss"], rel=1e-4)
    for got, ref, name in zip(parts.tolist(), want["loss_items"], want["loss_items_names"]):
        assert got == pytest.approx(ref, rel=1e-4), name
    # the official loss is linear in its gains and the assignment does not read them, so the
    # p5-hyp values follow from the official ones: box ×0.05/0.05, obj ×0.7/1.0, cls ×0.3/0.5
    _, p5 = criterion(model, "p5", 640)(outputs, targets, imgs)
    for got, ref, ratio in zip(p5.tolist(), want["loss_items"], (1.0, 0.7, 0.6)):
        assert got == pytest.approx(ref * ratio, rel=1e-4)


# ----- random heads --------------------------------------------------------------------------
def head_and_outputs(nc=3, batch=2, img=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    head = M.IDetect(nc, ANCH3, [8, 8, 8], [8, 16, 32])
    outs = [(torch.randn(batch, 3, img // s, img // s, nc + 5, generator=g) * 1.5)
            .requires_grad_() for s in (8, 16, 32)]
    return head, outs


def random_targets(n_per_image, nc, seed=0):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for b, n in enumerate(n_per_image):
        for _ in range(n):
            wh = torch.rand(2, generator=g) * 0.4 + 0.05
            xy = torch.rand(2, generator=g) * (1 - wh) + wh / 2
            rows.append([b, int(torch.randint(nc, (1,), generator=g)), *xy.tolist(),
                         *wh.tolist()])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)


def test_permuting_targets_and_images_leaves_the_loss_unchanged():
    head, outs = head_and_outputs()
    t = random_targets([5, 4], 3)
    crit = criterion(head, "p5", 128)
    loss, parts = crit(outs, t)
    perm = torch.randperm(len(t), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(crit(outs, t[perm])[1], parts, rtol=1e-5, atol=1e-7)
    swapped = [o.flip(0) for o in outs]
    t2 = t.clone()
    t2[:, 0] = 1 - t2[:, 0]
    torch.testing.assert_close(crit(swapped, t2)[1], parts, rtol=1e-5, atol=1e-7)


def test_gradients_flow_to_positives_and_objectness_only_through_the_loss():
    head, outs = head_and_outputs()
    t = random_targets([3, 3], 3)
    loss, parts = criterion(head, "p5", 128)(outs, t)
    assert loss.requires_grad and not parts.requires_grad
    assert loss.item() == pytest.approx(2 * parts[3].item(), rel=1e-6)
    loss.backward()
    for o in outs:
        assert torch.isfinite(o.grad).all()
        assert o.grad[..., 4].abs().sum() > 0          # objectness everywhere
    assert sum(o.grad[..., :4].abs().sum() for o in outs) > 0   # boxes at positives
    assert sum(o.grad[..., 5:].abs().sum() for o in outs) > 0   # classes at positives


def test_inputs_are_not_modified_and_focal_variant_trains():
    head, outs = head_and_outputs()
    t = random_targets([4, 3], 3)
    before = [o.detach().clone() for o in outs], t.clone()
    loss, parts = criterion(head, "p5", 128)(outs, t)
    assert all(torch.equal(a, b) for a, b in zip(before[0], outs)) and torch.equal(before[1], t)
    focal = criterion(head, {**load_hyp("p5"), "fl_gamma": 1.5}, 128)
    loss_f, parts_f = focal(outs, t)
    assert torch.isfinite(parts_f).all() and 0 < parts_f[3] < parts[3]   # focal down-weights
    loss_f.backward()
    assert outs[0].grad[..., 4].abs().sum() > 0


def test_image_without_targets_and_batch_without_targets():
    head, outs = head_and_outputs()
    crit = criterion(head, "p5", 128)
    t = random_targets([4, 0], 3)
    _, parts = crit(outs, t)
    assert parts[0] > 0 and parts[2] > 0
    loss, parts = crit(outs, torch.zeros(0, 6))
    assert parts[0].item() == 0.0 and parts[2].item() == 0.0 and parts[1] > 0
    loss.backward()                                     # objectness still trains
    assert outs[0].grad[..., 4].abs().sum() > 0


def test_single_class_has_no_class_loss():
    head, outs = head_and_outputs(nc=1)
    _, parts = criterion(head, "p5", 128)(outs, random_targets([3, 2], 1))
    assert parts[2].item() == 0.0 and parts[0] > 0


def test_eval_mode_output_and_images_argument_are_accepted():
    head, outs = head_and_outputs()
    t = random_targets([3, 2], 3)
    crit = criterion(head, "p5", 128)
    _, parts = crit(outs, t)
    torch.testing.assert_close(crit((torch.zeros(1), outs), t)[1], parts)
    torch.testing.assert_close(crit(outs, t, torch.zeros(2, 3, 128, 128))[1], parts)


def test_aux_path_on_a_small_p6_like_dsl_model():
    """A DSL model with an IAuxDetect head: lead + aux outputs, gradients reach both heads
    and the shared backbone; removing the aux outputs gives the lead-only loss."""
    from yolov7c.ir.dsl import Builder
    b = Builder("p6-toy", act="silu")
    x = b.conv(b.input, 8, 3, 2)
    lead, aux = [], []
    for c in (8, 16, 16, 16):
        x = b.conv(x, c, 3, 2)
        lead.append(x)
        aux.append(b.conv(x, c, 1, 1))
    anchors = [[6, 8, 10, 18, 20, 14], [18, 37, 38, 28, 36, 73],
               [71, 55, 96, 121, 120, 100], [110, 150, 90, 124, 126, 98]]
    b.detect(lead + aux, nc=2, anchors=anchors, kind="IAuxDetect")
    model = yolov7c.build(b.build()).train()
    torch.manual_seed(0)
    imgs = torch.rand(2, 3, 128, 128)
    out = model(imgs)
    assert len(out) == 8
    crit = criterion(model, "p6", 128)
    assert crit.aux and crit.topq == 20 and crit.balance == [4.0, 1.0, 0.25, 0.06]
    t = random_targets([4, 3], 2, seed=3)
    loss, parts = crit(out, t, imgs)
    loss.backward()
    det = model.detect
    assert det.m2[0].weight.grad.abs().sum() > 0 and det.m[0].weight.grad.abs().sum() > 0
    assert model.model[0].conv.weight.grad.abs().sum() > 0
    lead_only = crit([o.detach() for o in out[:4]], t)[1]
    assert lead_only[3] < parts[3]                       # the aux terms add to the loss


def test_hyp_presets_files_and_scaling(tmp_path):
    p5, p6, tiny = load_hyp("p5"), load_hyp("p6"), load_hyp("tiny")
    assert (p5["lrf"], p6["lrf"], tiny["lrf"]) == (0.1, 0.2, 0.01)
    assert (p5["cls"], p5["obj"], tiny["cls"], tiny["obj"]) == (0.3, 0.7, 0.5, 1.0)
    s = scale_hyp(p6, nl=4, nc=80, img=1280)
    assert s["box"] == pytest.approx(0.05 * 3 / 4)
    assert s["cls"] == pytest.approx(0.3 * 3 / 4)
    assert s["obj"] == pytest.approx(0.7 * 4 * 3 / 4)
    s = scale_hyp(tiny, nl=3, nc=3, img=320)
    assert s["cls"] == pytest.approx(0.5 * 3 / 80) and s["obj"] == pytest.approx(0.25)
    path = tmp_path / "h.yaml"
    save_hyp({**p5, "box": 0.07}, path)
    assert load_hyp(path)["box"] == 0.07
    assert load_hyp({**p5})["obj"] == 0.7
    load_hyp("p5")["box"] = 1.0                          # a copy: the preset is unchanged
    assert load_hyp("p5")["box"] == 0.05


def test_bad_input_is_one_line_user_error(tmp_path):
    head, outs = head_and_outputs()
    crit = criterion(head, "p5", 128)
    with pytest.raises(yolov7c.UserError, match=r"targets: expected \(n, 6\)"):
        crit(outs, torch.zeros(3, 5))
    bad = random_targets([2, 2], 3)
    bad[2, 1] = 7
    with pytest.raises(yolov7c.UserError, match=r"targets row 2: class 7 .*nc"):
        crit(outs, bad)
    bad = random_targets([2, 2], 3)
    bad[1, 0] = 5
    with pytest.raises(yolov7c.UserError, match=r"targets row 1: image index 5"):
        crit(outs, bad)
    with pytest.raises(yolov7c.UserError, match="raw maps"):
        crit(outs[:2], random_targets([1, 1], 3))
    aux_head = M.IAuxDetect(3, ANCH3, [8] * 6, [8, 16, 32])
    mixed = outs + [torch.zeros(2, 3, 8, 8, 8)] * 3            # aux maps at the wrong stride
    with pytest.raises(yolov7c.UserError, match="aux map 0"):
        criterion(aux_head, "p6", 128)(mixed, random_targets([1, 1], 3))
    with pytest.raises(yolov7c.UserError, match="no Detect"):
        criterion(torch.nn.Linear(2, 2))
    with pytest.raises(yolov7c.UserError, match="not a preset"):
        criterion(head, "p7")
    with pytest.raises(yolov7c.UserError, match="loss_ota = 0"):
        criterion(head, {**load_hyp("p5"), "loss_ota": 0})
    f = tmp_path / "h.yaml"
    f.write_text("box: 0.05\n")
    with pytest.raises(yolov7c.UserError, match=r"h.yaml: missing cls, obj"):
        load_hyp(f)
    f.write_text("box: [0.05\n")
    with pytest.raises(yolov7c.UserError, match="not valid YAML"):
        load_hyp(f)
