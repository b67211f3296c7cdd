"""``tools/qat.py`` / ``yolo-kd qat``: quantization-aware training with distillation, then INT8 export and report.

    python tools/qat.py --model best.pt --teacher teacher.pt --data my.yaml --epochs 10
    python tools/qat.py --resume runs/qat/exp/train/weights/last.pt

Writes ``<project>/<name>/``: ``train/`` (the fine-tuning run), ``qat_int8.onnx`` (QDQ, every op PTQ
quantizes in INT8 with QAT's scales, decode float: the onnxruntime file), ``qat_int8_convs.onnx`` (only the
convolutions quantized: exactly the trained network), ``qat_int8_openvino_model/`` (with OpenVINO installed), the parent's
``parent_fp32.onnx`` and ``parent_ptq_int8.onnx`` for comparison, ``qat_report.md``/``.json``. Like Ultralytics, an
existing ``<name>`` gives ``<name>-2`` unless ``--exist-ok``. Every option is also a ``key=value``; other
Ultralytics training arguments (lr0, optimizer, workers, seed, fraction, ...) pass through to the fine-tuning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..core.errors import KDError
from .args import ArgParser, parse_args

#: Ultralytics arguments this tool sets itself, and why
RESERVED = {"quantize": "this tool is yolo_kd's QAT (Ultralytics' quantize=8 needs NVIDIA ModelOpt)"}


def build_parser() -> ArgParser:
    from ..distill.config import config_keys

    p = ArgParser(prog="qat", description="Quantization-aware training: fine-tune a trained detector with fake-quantized "
                  "INT8 convolutions while a teacher distils into it, then export INT8 ONNX (and OpenVINO) with a report. "
                  "Other Ultralytics training arguments pass through as key=value or --key value.")
    p.add_argument("--model", help="trained FP32 detection checkpoint to fine-tune (.pt; distilled or pruned)")
    p.add_argument("--teacher", help="teacher .pt that distils into the model during QAT (default: none, plain detection loss)")
    p.add_argument("--data", help="dataset YAML, or synthetic[:tiny|small|bench]")
    p.add_argument("--epochs", type=int, default=10, help="QAT fine-tuning epochs (default 10)")
    p.add_argument("--imgsz", type=int, default=640, help="fine-tuning, calibration and export size (default 640)")
    p.add_argument("--batch", type=int, default=16, help="fine-tuning batch size (default 16)")
    p.add_argument("--device", default=None, help="cpu, 0, 0,1 ... (default: Ultralytics' choice)")
    p.add_argument("--calib-images", type=int, default=128,
                   help="train images that set the activation ranges before QAT, and calibrate the parent's PTQ (default 128)")
    p.add_argument("--backend", default="auto", choices=["auto", "onnxruntime", "openvino", "both"],
                   help="INT8 runtimes to export for (default auto: OpenVINO too where it is installed)")
    p.add_argument("--placement", default="conv", choices=["conv", "nncf"],
                   help="where the activation quantizers train: conv = every convolution's input and output (default), "
                        "nncf = where NNCF puts them for OpenVINO (after the activations)")
    p.add_argument("--kd-cfg", help="distillation YAML (default cfg/kd_default.yaml)")
    for key in config_keys():
        p.add_argument(f"--kd-{key.replace('_', '-')}", dest=f"kd_{key}", default=None, metavar="V", help=f"distillation '{key}'")
    p.add_argument("--project", default="runs/qat", help="output root (default runs/qat)")
    p.add_argument("--name", default="exp", help="run name (default exp; exp-2, exp-3 ... when it exists)")
    p.add_argument("--exist-ok", action="store_true", help="write into an existing <project>/<name>")
    p.add_argument("--resume", help="continue a QAT run from its train/weights/last.pt (then exports and reports)")
    p.add_argument("--no-ptq", action="store_true", help="skip the parent's PTQ INT8 export (the comparison row)")
    p.add_argument("--no-report", action="store_true", help="skip the latency/mAP report (exports only)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime/OpenVINO threads for the latency report (default 2)")
    p.add_argument("--latency-seconds", type=float, default=6.0, help="timing budget per model (default 6)")
    return p


def resolve(argv: Sequence[str] | None) -> tuple[Any, dict[str, Any]]:
    """Parsed options (``name`` incremented unless ``--exist-ok``) and the overrides for the fine-tuning."""
    from ultralytics.utils.files import increment_path

    args, overrides, _ = parse_args(build_parser(), argv, passthrough=True, reserved=RESERVED)
    kd = {k: v for k, v in vars(args).items() if k.startswith("kd_") and k != "kd_cfg" and v is not None}
    if kd:
        from ..distill.config import load_kd_config

        load_kd_config(args.kd_cfg, **{k[3:]: v for k, v in kd.items()})  # a bad setting: one line now
    overrides.update(kd)
    if not args.resume:
        if not args.model or not args.data:
            raise KDError(f"--{'model' if not args.model else 'data'} is required (or --resume a QAT run's last.pt)")
        if not args.exist_ok:
            args.name = increment_path(Path(args.project).resolve() / args.name).name
    return args, overrides


def main(argv: Sequence[str] | None = None) -> int:
    from ..quantize.qat import run_qat

    args, overrides = resolve(argv)
    if args.threads < 1:
        raise KDError(f"--threads {args.threads} is invalid: pass 1 or more threads")
    result = run_qat(
        args.model, args.data, teacher=args.teacher, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
        device=args.device, calib_images=args.calib_images, backend=args.backend,
        save_dir=Path(args.project) / args.name, kd_cfg=args.kd_cfg, resume=args.resume, report=not args.no_report,
        ptq=not args.no_ptq, threads=args.threads, latency_seconds=args.latency_seconds, placement=args.placement,
        **overrides)
    if result.table:
        print("\n" + result.table + "\n")
    print(f"QAT checkpoint: {result.best}\nINT8 ONNX:      {result.int8_onnx}")
    if result.openvino_int8 and not result.openvino_int8_convs:
        print(f"INT8 IR:        {result.openvino_int8}  (the network as trained, quantizers in NNCF's placement)")
    elif result.openvino_int8:
        print(f"INT8 IR:        {result.openvino_int8}  (NNCF's placement: as fast as OpenVINO's own INT8)")
    if result.openvino_int8_convs:
        print(f"INT8 IR:        {result.openvino_int8_convs}  (QAT's placement: slower, more accurate)")
    if result.json:
        print(f"report:         {result.json}")
    return 0
