"""How much the teacher's precision changes what the student learns: fp32 against fp16 and bf16, on real images.

The teacher runs outside the trainer's autocast in the precision ``teacher_precision`` names (``auto``: fp16 on
CUDA, bf16 on a CPU with native bf16). This measures, on one batch of the dataset's validation images:

* the teacher's outputs against fp32: class probabilities (max and mean |diff|), DFL bin probabilities, neck
  features (relative L2 error);
* each distillation term's value with that teacher against the fp32 teacher's, for the same student weights;
* the cosine between the student's gradients (distillation terms only) under each teacher and under fp32;
* the teacher's forward time per precision (taking turns, synchronised on CUDA: ``yolo_kd.core.timing``).

    python benchmarks/teacher_precision.py --teacher runs/bench/teacher-s/weights/best.pt \\
        --data datasets/shapes-bench/data.yaml --device 0 --imgsz 640
"""

from __future__ import annotations

import argparse
import copy
import json

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--student", default="yolo11n.yaml")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    p.add_argument("--seconds", type=float, default=6.0, help="time spent timing the teacher's forwards, all precisions")
    p.add_argument("--json", help="also write the results to this file")
    a = p.parse_args()

    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import select_device

    from yolo_kd.core.checkpoints import load_checkpoint_model
    from yolo_kd.core.timing import time_in_turns
    from yolo_kd.distill.config import load_kd_config
    from yolo_kd.distill.model import KDModel
    from yolo_kd.distill.teacher import Teacher

    device = select_device(a.device, verbose=False)
    torch.manual_seed(0)
    data = check_det_dataset(a.data)
    args = get_cfg(overrides={"imgsz": a.imgsz})
    dataset = build_yolo_dataset(args, data["val"], a.batch, data, mode="val", stride=32)
    batch = next(iter(build_dataloader(dataset, a.batch, 0, shuffle=False)))
    batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    batch["img"] = batch["img"].float() / 255
    img = batch["img"]

    net, _ = load_checkpoint_model(a.teacher, "teacher")
    student = DetectionModel(a.student, nc=data["nc"], verbose=False).to(device)
    student.args = args
    precisions = ["fp32", "fp16", "bf16"]
    teachers = {pr: Teacher(copy.deepcopy(net), pr).to(device) for pr in precisions}
    outs = {pr: t(img) for pr, t in teachers.items()}

    def dfl_probs(o, reg_max):
        b = o["boxes"]
        return b.view(b.shape[0], 4, reg_max, -1).softmax(2)

    reg_max = int(teachers["fp32"].head.reg_max)
    ref = outs["fp32"]
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "imgsz": a.imgsz,
              "batch": img.shape[0], "torch": torch.__version__, "outputs": {}, "terms": {}, "grad_cosine": {}, "forward_ms": {}}
    for pr in precisions[1:]:
        o = outs[pr]
        ds = (o["scores"].sigmoid() - ref["scores"].sigmoid()).abs()
        entry = {"score_max_abs": float(ds.max()), "score_mean_abs": float(ds.mean()),
                 "feat_rel_l2": [float((f - g).norm() / g.norm()) for f, g in zip(o["feats"], ref["feats"])]}
        if reg_max > 1:
            dp = (dfl_probs(o, reg_max) - dfl_probs(ref, reg_max)).abs()
            entry.update(dfl_prob_max_abs=float(dp.max()), dfl_prob_mean_abs=float(dp.mean()))
        result["outputs"][pr] = entry

    # the distillation terms and their gradients, for the same student under each teacher
    grads, values = {}, {}
    model = KDModel(student, teachers["fp32"], load_kd_config()).train()  # one student and one set of adapters
    params = [q for q in model.parameters() if q.requires_grad]
    for pr in precisions:
        model.replace_teacher(teachers[pr])
        loss, items = model(batch)
        values[pr] = {t: float(items[t]) for t in model.terms}
        g = torch.autograd.grad(loss[3:].sum(), params, allow_unused=True)  # the distillation terms only
        grads[pr] = torch.cat([(x if x is not None else torch.zeros_like(q)).flatten() for x, q in zip(g, params)])
    for pr in precisions[1:]:
        result["terms"][pr] = {t: {"fp32": values["fp32"][t], pr: v, "rel_diff": abs(v - values["fp32"][t]) / max(abs(values["fp32"][t]), 1e-12)}
                               for t, v in values[pr].items()}
        result["grad_cosine"][pr] = float(torch.nn.functional.cosine_similarity(grads[pr].double(), grads["fp32"].double(), dim=0))

    # forward time, the precisions taking turns (synchronised on CUDA)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    stats = time_in_turns([lambda t=t: t(img) for t in teachers.values()], seconds=a.seconds, sync=sync)
    result["forward_ms"] = {pr: st["median"] for pr, st in zip(teachers, stats)}

    print(f"\nteacher precision against fp32 ({result['device']}, imgsz {a.imgsz}, batch {img.shape[0]} validation images)\n")
    print("| teacher | max abs diff, class prob | mean | DFL bin prob max | neck features rel. L2 | student grad cosine | forward ms |")
    print("|---|---|---|---|---|---|---|")
    print(f"| fp32 | 0 | 0 | 0 | 0 | 1 | {result['forward_ms']['fp32']:.1f} |")
    for pr in precisions[1:]:
        e = result["outputs"][pr]
        print(f"| {pr} | {e['score_max_abs']:.2e} | {e['score_mean_abs']:.2e} | {e.get('dfl_prob_max_abs', 0):.2e} | "
              f"{max(e['feat_rel_l2']):.2e} | {result['grad_cosine'][pr]:.5f} | {result['forward_ms'][pr]:.1f} |")
    print("\n| term | fp32 | " + " | ".join(f"{pr} (rel. diff)" for pr in precisions[1:]) + " |\n|---|---|" + "---|" * (len(precisions) - 1))
    for t in values["fp32"]:
        print(f"| {t} | {values['fp32'][t]:.5f} | " + " | ".join(
            f"{values[pr][t]:.5f} ({result['terms'][pr][t]['rel_diff']:.1e})" for pr in precisions[1:]) + " |")
    print(json.dumps(result))
    if a.json:
        from yolo_kd.core.files import write_json_atomic

        write_json_atomic(a.json, result)


if __name__ == "__main__":
    main()
