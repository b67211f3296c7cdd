"""KDModel contract: gradients, frozen teacher, hooks cleared, copies drop the teacher, mismatches refused."""

import copy
import pickle

import pytest
import torch
from ultralytics.cfg import get_cfg

from yolo_kd.distill.config import load_kd_config
from yolo_kd.distill.model import KDModel, freeze_teacher
from yolo_kd.core.errors import KDError

from .conftest import detection_model, toy_batch


def _model(cfg="yolo11n.yaml", nc=4, seed=0):
    return detection_model(cfg, nc, seed)


_batch = toy_batch


@pytest.fixture
def pair():
    student, teacher = _model("yolo11n.yaml", seed=0), _model("yolo11s.yaml", seed=1)
    return student, teacher


def test_gradients_reach_student_and_adapters_never_teacher(pair):
    student, teacher = pair
    kd = KDModel(student, teacher, load_kd_config(feat_loss="cwd")).train()
    loss, items = kd(_batch())
    assert set(items) >= {"box_loss", "cls_loss", "dfl_loss", "kd_cls", "kd_box", "kd_feat"}
    assert all(torch.isfinite(v) for v in items.values()) and items["kd_feat"] > 0
    loss.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in kd.adapters.parameters())
    assert student.model[0].conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not any(t.requires_grad for t in kd.teacher(_batch()["img"])["feats"])  # the teacher keeps no graph
    assert not any(n.startswith("teacher") for n, _ in kd.named_parameters())


def test_teacher_stays_frozen_and_bn_statistics_unchanged(pair):
    student, teacher = pair
    kd = KDModel(student, teacher, load_kd_config())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.SGD(kd.parameters(), lr=0.01)
    for _ in range(3):
        kd.train()  # the trainer calls train() every epoch: the teacher must stay in eval
        loss, _ = kd(_batch())
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    assert not teacher.training
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_identical_student_and_teacher_give_zero_logit_terms():
    student, teacher = _model(seed=3), _model(seed=3)
    kd = KDModel(student, teacher, load_kd_config(feat=0))
    kd.student_model.eval()  # same BN statistics path as the teacher -> identical logits
    kd.training = True
    _, items = kd.loss(_batch())
    assert items["kd_cls"] < 1e-5 and items["kd_box"] < 1e-5
    assert "kd_feat" not in items  # weight 0 turns the term off


def test_freeze_teacher_folds_bn_without_changing_outputs():
    teacher = _model("yolo11s.yaml", seed=1)
    with torch.no_grad():  # give BN non-trivial statistics so folding is really exercised
        teacher.train()(torch.rand(4, 3, 64, 64))
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ref = teacher.eval()(x)[0]
        n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.modules())
        fast = freeze_teacher(teacher)(x.contiguous(memory_format=torch.channels_last))[0]
    assert n_bn > 0 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.modules())
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("feat_loss", ["cwd", "mgd", "mse"])
def test_copies_drop_the_teacher(pair, feat_loss):
    student, teacher = pair
    kd = KDModel(student, teacher, load_kd_config(feat_loss=feat_loss))
    kd(_batch())
    ema = copy.deepcopy(kd)  # what Ultralytics' ModelEMA does
    clone = pickle.loads(pickle.dumps(kd))
    for c in (ema, clone):
        assert c.teacher is None and c.adapters is not None
        assert c.names == student.names and torch.equal(c.stride, student.stride)
        c.eval()
        out = c(torch.zeros(1, 3, 64, 64))  # validation path: the student's prediction
        assert out[0].shape[1] == 4 + 4
    assert kd.teacher_network is teacher  # the original keeps its teacher


def test_cross_family_teacher_and_attribute_delegation():
    student, teacher = _model("yolov8n.yaml"), _model("yolo11s.yaml")
    kd = KDModel(student, teacher, load_kd_config())
    kd.args = get_cfg(overrides={"imgsz": 96})
    assert student.args.imgsz == 96  # trainer-set attributes land on the student
    loss, items = kd.train()(_batch())
    assert torch.isfinite(loss).all() and "kd_box" in items


def test_reg_max_one_teacher_distils_boxes_on_distances_with_message(caplog, monkeypatch):
    student, teacher = _model("yolo11n.yaml"), _model("yolo26n.yaml")
    from ultralytics.utils import LOGGER

    monkeypatch.setattr(LOGGER, "propagate", True)  # for caplog; restored after the test (Ultralytics' logger does not propagate)
    kd = KDModel(student, teacher, load_kd_config())
    assert {"kd_box", "kd_cls"} <= set(kd.terms) and not kd.skipped
    assert "box distillation on side distances (l1_giou): teacher reg_max 1, student reg_max 16" in caplog.text


def test_mismatched_classes_and_strides_refused():
    with pytest.raises(KDError, match="classes"):
        KDModel(_model(nc=4), _model(nc=5), load_kd_config())
    p2 = _model("yolov8n-p2.yaml") if True else None
    with pytest.raises(KDError, match="strides"):
        KDModel(_model(), p2, load_kd_config())


def test_non_finite_teacher_never_reaches_the_loss(pair):
    student, teacher = pair
    kd = KDModel(student, teacher, load_kd_config())
    head = teacher.model[-1]
    calls = []

    def overflow(module, inputs, output):  # an fp16 overflow in every raw teacher output (boxes, scores, feats)
        calls.append(1)
        return {k: (v * float("inf") if torch.is_tensor(v) else [f * float("inf") for f in v]) for k, v in output.items()}

    head.register_forward_hook(overflow)
    loss, items = kd.train()(_batch())
    assert calls and all(torch.isfinite(items[k]) for k in ("kd_cls", "kd_box", "kd_feat"))
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in student.parameters() if p.grad is not None)


def test_share_distils_the_first_images_only_with_each_term_a_mean_over_them(pair):
    """share=0.5 of 4 images: the teacher runs on images 0-1 only, and every term equals the term of a full
    distillation of a batch holding just those two images (a per-image mean: its size does not depend on the share)."""
    from yolo_kd.distill.model import distilled_count

    student, teacher = pair
    half = KDModel(student, teacher, load_kd_config(share=0.5)).train()
    seen = []
    hook = half.teacher_network.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    batch = _batch(4)
    _, items = half(batch)
    hook.remove()
    assert seen == [2]
    full = KDModel(copy.deepcopy(student), copy.deepcopy(teacher), load_kd_config()).train()
    full.adapters.load_state_dict(half.adapters.state_dict())
    with torch.no_grad():
        for m in (half, full):  # both see the same student outputs: BN in training mode would mix the four images
            m.student_model.eval()
            m.training = True
        _, part = half.loss(batch)
        _, ref = full.loss({**batch, "img": batch["img"][:2]})
    for term in ("kd_cls", "kd_box", "kd_feat"):
        assert part[term] > 0
        torch.testing.assert_close(part[term], ref[term], rtol=1e-4, atol=1e-6)
    assert [distilled_count(16, s) for s in (1.0, 0.5, 0.25, 0.3, 0.01)] == [16, 8, 4, 5, 1]
    with pytest.raises(KDError, match="'share'"):
        load_kd_config(share=0)


def test_temperature_auto_follows_the_run_length(pair):
    """KDModel settles ``temperature: auto`` from the run's epochs: a 40-epoch run's terms are those of an explicit
    T = 4, a 100-epoch run's (and a run of unknown length's) those of T = 2."""
    student, teacher = pair
    batch = _batch(2)

    def terms(config, epochs=None):
        torch.manual_seed(0)
        m = KDModel(copy.deepcopy(student), copy.deepcopy(teacher), config, epochs=epochs).train()
        with torch.no_grad():
            return m.kd_config.temperature, m(batch)[1]

    for epochs, explicit in ((40, 4.0), (100, 2.0), (None, 2.0)):
        t, auto = terms(load_kd_config(), epochs)
        _, ref = terms(load_kd_config(temperature=explicit), epochs)
        assert t == explicit
        for term in ("kd_cls", "kd_box"):
            torch.testing.assert_close(auto[term], ref[term])
    assert not torch.allclose(terms(load_kd_config(), 40)[1]["kd_cls"], terms(load_kd_config(), 100)[1]["kd_cls"])


def test_box_auto_follows_the_run_length_and_keeps_1_for_side_distances(pair):
    """``box: auto`` weighs the DFL-bin box term 4 on runs of 60 epochs or more (and of unknown length), 1 on shorter
    ones; a box term on side distances (a YOLO26 teacher: no bins, no temperature) stays at 1 on any run."""
    student, teacher = pair
    batch = _batch(2)

    def kd_box(config, epochs, t=teacher):
        torch.manual_seed(0)
        m = KDModel(copy.deepcopy(student), copy.deepcopy(t), config, epochs=epochs).train()
        with torch.no_grad():
            return m.kd_config.box, m.box_form, m(batch)[1]["kd_box"]

    for epochs, weight in ((40, 1.0), (59, 1.0), (60, 4.0), (239, 4.0), (None, 4.0)):
        box, form, auto = kd_box(load_kd_config(), epochs)
        _, _, one = kd_box(load_kd_config(box=1), epochs)
        assert (box, form) == (weight, "dfl") and float(one) > 0
        torch.testing.assert_close(auto, one * weight)
    distances = _model("yolo26n.yaml", seed=1)
    box, form, auto = kd_box(load_kd_config(), 239, distances)
    assert (box, form) == (1.0, "distance")
    torch.testing.assert_close(auto, kd_box(load_kd_config(box=1), 239, distances)[2])
