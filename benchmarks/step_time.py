"""Training-step cost of vanilla vs yolo_kd vs Ultralytics' built-in distillation, interleaved in one process.

Epoch times read from separate runs are distorted when the machine is shared; this times the same
batches through the three set-ups in round-robin rounds, so background load hits all of them alike.
Each step = forward (teacher + student where distilling) + loss + backward + optimizer step, under autocast and a
gradient scaler with ``--amp`` as Ultralytics' trainer runs it on a GPU; CUDA steps are timed between synchronisations.

    python benchmarks/step_time.py --teacher runs/bench/teacher-s/weights/best.pt --data datasets/shapes-bench/data.yaml
    python benchmarks/step_time.py --teacher ... --data ... --device 0 --amp --imgsz 640 --batch 16   # the GPU ratio
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--student", default="yolo11n.yaml")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=3, help="steps per variant per round")
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    p.add_argument("--amp", action="store_true", help="mixed precision for the student, as Ultralytics trains on a GPU")
    p.add_argument("--json", help="also write the medians and settings to this file")
    p.add_argument("--only", help="comma-separated set-ups to time besides vanilla and builtin (the ratio columns), e.g. 'yolo_kd,yolo_kd mgd'")
    a = p.parse_args()
    from ultralytics.utils.torch_utils import select_device

    device = select_device(a.device, verbose=False)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as Ultralytics' trainer sets it for fixed-size batches

    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.nn.distill_model import DistillationModel
    from ultralytics.nn.tasks import DetectionModel

    from yolo_kd.core.checkpoints import load_checkpoint_model
    from yolo_kd.distill.config import load_kd_config
    from yolo_kd.distill.model import KDModel

    torch.manual_seed(0)
    data = check_det_dataset(a.data)
    args = get_cfg(overrides={"imgsz": a.imgsz})
    loader = build_dataloader(build_yolo_dataset(args, data["train"], a.batch, data, mode="train"), a.batch, 0, shuffle=True)
    batches = []
    for b in loader:
        b = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
        b["img"] = b["img"].float() / 255
        batches.append(b)
        if len(batches) == a.steps:
            break
    teacher, _ = load_checkpoint_model(a.teacher, "teacher")
    base = DetectionModel(a.student, nc=data["nc"], verbose=False).to(device)
    teacher.to(device)
    base.args = args

    def fresh():
        m = copy.deepcopy(base)
        m.args = args
        return m

    def kd(**overrides):
        return lambda: KDModel(fresh(), copy.deepcopy(teacher), load_kd_config(**overrides)).train()

    setups = {  # built only when timed, so --only does not build the teacher copies it leaves out
        "vanilla": lambda: fresh().train(),
        "yolo_kd": kd(),  # defaults (teacher_precision auto)
        "yolo_kd fp32 teacher": kd(teacher_precision="fp32"),
        "yolo_kd no feat": kd(feat=0),
        "yolo_kd mgd": kd(feat_loss="mgd"),
        "yolo_kd share 0.5": kd(share=0.5),
        "yolo_kd share 0.25": kd(share=0.25),
        **({"yolo_kd bf16 teacher": kd(teacher_precision="bf16")} if device.type == "cuda" else {}),
        "builtin": lambda: DistillationModel(copy.deepcopy(teacher), fresh()).train(),
    }
    if a.only:
        keep = {"vanilla", "builtin", *(v.strip() for v in a.only.split(","))}
        if unknown := keep - set(setups):
            raise SystemExit(f"--only: unknown set-up(s) {sorted(unknown)}; choose from {sorted(setups)}")
        setups = {k: build for k, build in setups.items() if k in keep}
    models = {k: build() for k, build in setups.items()}
    print({k: str(m.teacher.dtype) for k, m in models.items() if isinstance(m, KDModel)})
    optims = {k: torch.optim.SGD([q for q in m.parameters() if q.requires_grad], lr=1e-3) for k, m in models.items()}
    scalers = {k: torch.amp.GradScaler(device.type, enabled=a.amp and device.type == "cuda") for k in models}
    times = {k: [] for k in models}

    def step(name, batch):
        m = models[name]
        with torch.autocast(device.type, enabled=a.amp):
            loss, _ = m.loss(batch) if name == "vanilla" else m(batch)
        optims[name].zero_grad()
        scalers[name].scale(loss.sum()).backward()
        scalers[name].step(optims[name])
        scalers[name].update()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for name in models:  # warm-up (and cuDNN's algorithm search)
        for batch in batches:
            step(name, batch)
    for _ in range(a.rounds):
        for name in models:
            for batch in batches:
                sync()
                t0 = time.perf_counter()
                step(name, batch)
                sync()
                times[name].append((time.perf_counter() - t0) * 1e3)
    med = {k: float(np.median(v)) for k, v in times.items()}
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"\nms per training step (batch {a.batch}, imgsz {a.imgsz}, amp {a.amp}, {len(times['vanilla'])} steps each, {where})\n")
    print("| set-up | median ms/step | p90 | x vanilla | x builtin |\n|---|---|---|---|---|")
    for k, v in times.items():
        print(f"| {k} | {med[k]:.0f} | {np.percentile(v, 90):.0f} | {med[k] / med['vanilla']:.2f} | {med[k] / med['builtin']:.2f} |")
    result = {"median_ms": med, "batch": a.batch, "imgsz": a.imgsz, "amp": a.amp, "device": where, "torch": torch.__version__}
    print(json.dumps(result))
    if a.json:
        from yolo_kd.core.files import write_json_atomic

        write_json_atomic(a.json, result)


if __name__ == "__main__":
    main()
