"""YOLO26 (reg_max=1, end-to-end one2many + one2one head): the side-distance box term, both branches, cross-family
pairs, and a one-epoch distillation run whose best.pt works in stock Ultralytics."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from yolo_kd.core.errors import KDError
from yolo_kd.distill.config import load_kd_config
from yolo_kd.distill.losses import distance_distillation_loss, side_distances
from yolo_kd.distill.model import KDModel

from .conftest import TRAIN_ARGS, detection_model, toy_batch


def _model(cfg="yolo26n.yaml", nc=4, seed=0):
    return detection_model(cfg, nc, seed)


_batch = toy_batch


# ----- the box term on side distances -----
def test_distance_loss_known_value():
    """Teacher box l=t=r=b=1 (2x2, area 4); the student's left side is 2 (3x2, area 6): L1 = 1 / (2 + 2) = 0.25,
    IoU = GIoU = 4/6 (the enclosing box is the student's), so l1_giou = 0.25 + 1/3."""
    t = torch.ones(1, 4, 1)
    s = torch.tensor([2.0, 1, 1, 1]).view(1, 4, 1)
    assert distance_distillation_loss(s, t, kind="l1").item() == pytest.approx(0.25)
    assert distance_distillation_loss(s, t, kind="giou").item() == pytest.approx(1 / 3, rel=1e-5)
    assert distance_distillation_loss(s, t).item() == pytest.approx(0.25 + 1 / 3, rel=1e-5)
    # a disjoint student box [2, 3] x [-1, 1]: IoU 0, enclosing box 4x2 = 8, union 6 -> GIoU = -0.25, loss 1.25
    disjoint = torch.tensor([-2.0, 1, 3, 1]).view(1, 4, 1).requires_grad_()
    loss = distance_distillation_loss(disjoint, t, kind="giou")
    assert loss.item() == pytest.approx(1.25, rel=1e-5)
    loss.backward()
    assert disjoint.grad.abs().sum() > 0  # GIoU still pulls a disjoint box towards the teacher's


@pytest.mark.parametrize("kind", ["l1_giou", "l1", "giou"])
def test_distance_loss_zero_at_equality_grows_and_only_the_student_gets_gradients(kind):
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 4, 30, generator=g) * 5 + 0.5
    noise = torch.randn(2, 4, 30, generator=g)
    w = torch.rand(2, 30, generator=g)
    assert distance_distillation_loss(t.clone(), t, w, kind).abs() < 1e-5
    vals = [distance_distillation_loss(t + e * noise, t, w, kind).item() for e in (0.05, 0.3, 1.0)]
    assert 0 < vals[0] < vals[1] < vals[2]
    s, teacher = (t + noise).requires_grad_(), t.clone().requires_grad_()
    distance_distillation_loss(s, teacher, w, kind).backward()
    assert s.grad.abs().sum() > 0 and teacher.grad is None


def test_distance_loss_weights_confident_anchors_and_rejects_unknown_kind():
    t = torch.ones(1, 4, 2)
    s = t.clone()
    s[0, 0, 1] = 3.0  # the error sits on anchor 1
    assert distance_distillation_loss(s, t, torch.tensor([[1.0, 0.0]])) == 0
    assert distance_distillation_loss(s, t, torch.tensor([[0.0, 1.0]])) > 0.5
    with pytest.raises(ValueError, match="l1_giou"):
        distance_distillation_loss(s, t, kind="l2")


def test_side_distances_of_dfl_heads_are_expected_bins():
    reg_max = 16
    logits = torch.full((1, 4 * reg_max, 1), -30.0)
    for side, b in enumerate((3, 0, 7, 15)):
        logits[0, side * reg_max + b, 0] = 30.0
    assert side_distances(logits, reg_max).flatten().tolist() == pytest.approx([3, 0, 7, 15], abs=1e-4)
    assert side_distances(torch.zeros(1, 4 * reg_max, 1), reg_max).flatten().tolist() == pytest.approx([7.5] * 4)
    raw = torch.randn(2, 4, 5)
    assert torch.equal(side_distances(raw, 1), raw)


# ----- KDModel with YOLO26 heads -----
def _kd_grads(student, teacher, **cfg):
    """Gradient of the distillation terms alone (not the detection loss) on the student's one2one box head."""
    kd = KDModel(student, teacher, load_kd_config(feat=0, **cfg)).train()
    loss, items = kd(_batch())
    loss[3:].sum().backward()
    head = student.model[-1]
    grad = sum(float(p.grad.abs().sum()) for p in head.one2one_cv2.parameters() if p.grad is not None)
    return kd, items, grad


def test_yolo26_pair_distils_both_branches_and_one2one_weight_turns_it_off():
    kd, items, grad = _kd_grads(_model(), _model("yolo26s.yaml", seed=1))
    assert kd.distil_one2one and items["kd_box"] > 0 and items["kd_cls"] > 0 and grad > 0
    assert all(p.grad is None for p in kd.teacher_network.parameters())
    kd, items, grad = _kd_grads(_model(), _model("yolo26s.yaml", seed=1), one2one=0)
    assert not kd.distil_one2one and items["kd_box"] > 0 and grad == 0


def test_end_to_end_terms_split_over_the_branches_as_the_detection_loss_does():
    """kd_cls / kd_box of a YOLO26 pair = g_m * (one2many value) + g_o * (one2one value), with (g_m, g_o) the
    student's E2ELoss shares: 0.8 / 0.2 at the start, 0.1 / 0.9 after its last epoch's update."""
    from yolo_kd.distill.model import branch_gains

    student = _model()
    with torch.no_grad():  # a fresh head's one2one convs are a copy of its one2many convs: make the branches differ
        for p in [*student.model[-1].one2one_cv2.parameters(), *student.model[-1].one2one_cv3.parameters()]:
            p.mul_(1.5)
    kd = KDModel(student, _model("yolo26s.yaml", seed=1), load_kd_config(feat=0)).train()
    batch = _batch()

    def items_at(gains):
        crit = student.criterion
        crit.o2m, crit.o2o = gains
        _, items = kd.loss(batch)
        return torch.stack([items["kd_cls"], items["kd_box"]])

    kd.loss(batch)  # builds the criterion
    assert branch_gains(student) == pytest.approx((0.8, 0.2))
    m, o = items_at((1.0, 0.0)), items_at((0.0, 1.0))
    assert (m > 0).all() and (o > 0).all() and not torch.allclose(m, o)
    assert torch.allclose(items_at((0.8, 0.2)), 0.8 * m + 0.2 * o, rtol=1e-4)
    crit = student.criterion
    crit.updates, crit.o2m = 0, crit.o2m_copy
    for _ in range(int(crit.one2one.hyp.epochs)):
        crit.update()  # what the trainer calls once per epoch
    assert branch_gains(student) == pytest.approx((0.1, 0.9))
    assert branch_gains(_model("yolo11n.yaml")) == (1.0, 1.0)  # one-branch heads: no split


def test_identical_yolo26_student_and_teacher_give_zero_terms_on_both_branches():
    student, teacher = _model(seed=3), _model(seed=3)
    kd = KDModel(student, teacher, load_kd_config(feat=0, one2one=2.0))
    kd.student_model.eval()  # the teacher's BN-folded path
    kd.training = True
    _, items = kd.loss(_batch())
    assert items["kd_cls"] < 1e-5 and items["kd_box"] < 1e-4


@pytest.mark.parametrize("student_cfg, teacher_cfg", [("yolo26n.yaml", "yolo11s.yaml"), ("yolo11n.yaml", "yolo26s.yaml")])
def test_cross_family_pairs_distil_boxes_on_distances(student_cfg, teacher_cfg):
    student = _model(student_cfg)
    kd = KDModel(student, _model(teacher_cfg, seed=1), load_kd_config()).train()
    loss, items = kd(_batch())
    assert not kd.distil_one2one and set(kd.terms) == {"kd_cls", "kd_box", "kd_feat"}
    assert torch.isfinite(loss).all() and items["kd_box"] > 0
    loss[3:].sum().backward()
    assert student.model[-1].cv2[0][-1].weight.grad.abs().sum() > 0  # the box term reaches the student's box convs


def test_pairs_that_cannot_match_are_refused_in_one_line():
    with pytest.raises(KDError, match="strides") as e:
        KDModel(_model(), _model("yolov8n-p2.yaml"), load_kd_config())
    assert "\n" not in str(e.value)
    with pytest.raises(KDError, match="classes"):
        KDModel(_model(nc=4), _model("yolo26s.yaml", nc=5), load_kd_config())
    fused = _model("yolo26s.yaml", seed=1)
    fused.model[-1].end2end = True
    fused.model[-1].fuse()  # an inference-fused head keeps only its one2one branch
    with pytest.raises(KDError, match="no one-to-many branch") as e:
        KDModel(_model(), fused, load_kd_config())
    assert "\n" not in str(e.value)


def test_one2one_weight_is_validated():
    assert load_kd_config(one2one="0.5").one2one == 0.5 and load_kd_config().box_loss == "l1_giou"
    with pytest.raises(KDError, match="'one2one' is negative"):
        load_kd_config(one2one=-1)
    with pytest.raises(KDError, match="unknown box distance distillation loss 'l2'"):
        load_kd_config(box_loss="l2")


# ----- one epoch through KDTrainer -----
@pytest.fixture(scope="module")
def yolo26_teacher(tiny_data, tmp_path_factory):
    from ultralytics import YOLO

    project = tmp_path_factory.mktemp("teacher26")
    YOLO("yolo26n.yaml").train(data=tiny_data, epochs=1, project=str(project), name="t", **TRAIN_ARGS)
    return str(project / "t" / "weights" / "best.pt")


def test_one_epoch_yolo26_distillation_and_stock_ultralytics_loads_best(yolo26_teacher, tiny_data, tmp_path):
    import yolo_kd

    trainer = yolo_kd.train("yolo26n.yaml", teacher=yolo26_teacher, data=tiny_data, epochs=1, project=str(tmp_path),
                            name="kd26", **TRAIN_ARGS)
    rows = list(csv.DictReader(open(Path(trainer.save_dir) / "results.csv")))
    assert len(rows) == 1 and float(rows[0]["train/kd_box"]) > 0 and float(rows[0]["train/kd_cls"]) > 0
    images = Path(tiny_data).parent / "images" / "val"
    code = f"""
import sys
from ultralytics import YOLO
m = YOLO({str(trainer.best)!r})
head = m.model.model[-1]
assert head.one2one_cv2 is not None and head.reg_max == 1
m.predict(source={str(images)!r}, imgsz=64, device="cpu", verbose=False)  # default: one2many + NMS
r = m.predict(source={str(images)!r}, imgsz=64, device="cpu", conf=0.0, nms=False, verbose=False)  # NMS-free one2one
assert not any(k.startswith("yolo_kd") for k in sys.modules), "yolo_kd was imported"
print("OK", len(r), len(r[0].boxes))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:2] == ["OK", "16"] and int(out.stdout.split()[2]) > 0
