"""Known-value tests of the distillation losses: 0 at equality, growth with difference, temperature scaling."""

import pytest
import torch

from yolo_kd.distill.losses import (
    MGDGenerator,
    anchor_weight,
    box_distillation_loss,
    class_distillation_loss,
    cwd_loss,
    score_weighted_mse_loss,
    teacher_confidence,
)
from yolo_kd.distill.losses.logit_losses import binary_kl_per_anchor


@pytest.fixture
def logits():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 5, 30, generator=g) * 3, torch.randn(2, 5, 30, generator=g)


@pytest.mark.parametrize("kind", ["bkl", "softmax_kl"])
def test_class_loss_zero_when_equal_and_grows(logits, kind):
    t, noise = logits
    assert class_distillation_loss(t.clone(), t, 2.0, kind).abs() < 1e-6
    losses = [class_distillation_loss(t + eps * noise, t, 2.0, kind).item() for eps in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(losses, losses[1:])) and losses[0] > 0


def test_binary_kl_matches_closed_form():
    s, t = torch.tensor([[[0.3]]]), torch.tensor([[[-1.2]]])
    ps, pt = torch.sigmoid(s), torch.sigmoid(t)
    expected = pt * torch.log(pt / ps) + (1 - pt) * torch.log((1 - pt) / (1 - ps))
    assert torch.allclose(binary_kl_per_anchor(s, t, 1.0), expected.sum(1), atol=1e-6)


@pytest.mark.parametrize("kind", ["bkl", "softmax_kl"])
def test_class_loss_temperature_scaling(logits, kind):
    """loss(s, t, T) == T² * loss(s/T, t/T, 1) with the same anchor weights."""
    t, noise = logits
    s, temp = t + noise, 3.0
    w = teacher_confidence(t)
    lhs = class_distillation_loss(s, t, temp, kind, w)
    rhs = temp**2 * class_distillation_loss(s / temp, t / temp, 1.0, kind, w)
    assert torch.allclose(lhs, rhs, rtol=1e-5)


def test_class_loss_weights_confident_anchors():
    """An error on a background anchor (teacher unsure) costs less than the same error on an object anchor."""
    t = torch.full((1, 2, 2), -6.0)
    t[0, 0, 0] = 6.0  # anchor 0 holds a confident object, anchor 1 is background
    err = torch.zeros_like(t)
    on_obj, on_bg = err.clone(), err.clone()
    on_obj[0, 1, 0] = 4.0
    on_bg[0, 1, 1] = 4.0
    assert class_distillation_loss(t + on_obj, t, 1.0) > 5 * class_distillation_loss(t + on_bg, t, 1.0)


def test_student_aware_weighting_sees_student_false_positives():
    """'max' weighting gives a background anchor the student fires on the student's confidence (so the class term
    pushes the false positive down); 'teacher' weighting ignores it. Neither carries a gradient."""
    t = torch.full((1, 2, 3), -6.0)
    t[0, 0, 0] = 6.0  # anchor 0: object; anchors 1, 2: background for the teacher
    s = t.clone()
    s[0, 1, 1] = 2.0  # the student agrees with the teacher except that it fires on anchor 1
    s.requires_grad_(True)
    by_teacher, by_max = anchor_weight(t, s, "teacher"), anchor_weight(t, s, "max")
    assert torch.allclose(by_teacher, teacher_confidence(t))
    assert by_max[0, 1] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert by_teacher[0, 1] == pytest.approx(torch.sigmoid(torch.tensor(-6.0)).item())
    assert by_max[0, 0] == by_teacher[0, 0] and by_max[0, 2] == by_teacher[0, 2]
    assert not by_max.requires_grad
    # the false positive costs more than 10x as much under 'max'
    fp_loss = {k: class_distillation_loss(s, t, 1.0, "bkl", anchor_weight(t, s, k)) for k in ("teacher", "max")}
    assert fp_loss["max"] > 10 * fp_loss["teacher"]


def test_box_loss_zero_equal_grows_and_scales():
    g = torch.Generator().manual_seed(1)
    t, noise = torch.randn(2, 4 * 16, 20, generator=g), torch.randn(2, 4 * 16, 20, generator=g)
    assert box_distillation_loss(t.clone(), t, 16, 2.0).abs() < 1e-6
    vals = [box_distillation_loss(t + e * noise, t, 16, 2.0).item() for e in (0.2, 1.0, 3.0)]
    assert vals[0] < vals[1] < vals[2]
    w = torch.rand(2, 20, generator=g)
    lhs = box_distillation_loss(t + noise, t, 16, 2.0, w)
    assert torch.allclose(lhs, 4.0 * box_distillation_loss((t + noise) / 2, t / 2, 16, 1.0, w), rtol=1e-5)


def test_feature_losses_zero_equal_and_grow():
    g = torch.Generator().manual_seed(2)
    t, noise = torch.randn(2, 8, 6, 6, generator=g), torch.randn(2, 8, 6, 6, generator=g)
    w = torch.rand(2, 36, generator=g)
    assert cwd_loss(t.clone(), t).abs() < 1e-6
    assert score_weighted_mse_loss(t.clone(), t, w).abs() < 1e-6
    for fn in (lambda s: cwd_loss(s, t, 2.0), lambda s: score_weighted_mse_loss(s, t, w)):
        a, b = fn(t + 0.3 * noise), fn(t + 2.0 * noise)
        assert 0 < a < b
    # MSE only looks at standardized patterns: a scaled teacher is still a perfect match
    assert score_weighted_mse_loss(3 * t + 1, t, w) < 1e-4
    # CWD's temperature scaling
    assert torch.allclose(cwd_loss(t + noise, t, 2.0), 4 * cwd_loss((t + noise) / 2, t / 2, 1.0), rtol=1e-5)


def test_mgd_generator_learns_and_gets_gradients():
    torch.manual_seed(0)
    t = torch.randn(2, 8, 6, 6)
    s = t.clone().requires_grad_(True)
    gen = MGDGenerator(8, mask_ratio=0.5)
    loss = gen(s, t)
    loss.backward()
    assert loss > 0 and s.grad is not None and gen.generator[0].weight.grad is not None
    opt = torch.optim.Adam(gen.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        opt.zero_grad()
        val = gen(t, t)
        val.backward()
        opt.step()
        first = first if first is not None else val.item()
    assert val.item() < 0.7 * first


def test_one_class_data_gets_a_nonzero_binary_class_term():
    """nc=1: softmax KL over one class is identically 0; the registry's class term uses binary KL (known value)."""
    import math

    from yolo_kd.distill.config import load_kd_config
    from yolo_kd.distill.terms import TERMS, TermInputs, class_loss_kind

    cfg = load_kd_config(temperature=1.0)  # default cls_loss: softmax_kl
    assert class_loss_kind(cfg, 1) == "bkl" and class_loss_kind(cfg, 6) == "softmax_kl"
    student = torch.zeros(2, 1, 5)  # p_s = 0.5 everywhere
    teacher = torch.full((2, 1, 5), math.log(3.0))  # p_t = 0.75 everywhere
    conf = teacher.sigmoid().amax(1)
    term = next(t for t in TERMS if t.name == "kd_cls")
    value = term.loss(TermInputs({"scores": student.requires_grad_()}, {"scores": teacher}, conf, cfg, 16))
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # Bernoulli KL(teacher || student)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert student.grad.abs().sum() > 0
    assert class_distillation_loss(student.detach(), teacher, 1.0, "softmax_kl").item() == 0.0  # what it was before
