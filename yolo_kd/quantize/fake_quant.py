"""Fake quantization for QAT, placed where onnxruntime's INT8 kernels need it (PyTorch's ``torch.ao.quantization``).

onnxruntime turns a convolution into an INT8 kernel (``QLinearConv``) only when its input *and its output* pass
through QuantizeLinear/DequantizeLinear: ``DQ(x), DQ(w) -> Conv -> Q``. So every quantized convolution here
fake-quantizes three tensors: its input (unsigned 8 bit, one scale per tensor, as the PTQ path's u8 activations),
its weight (signed 8 bit, symmetric, one scale per output channel) and its output (unsigned 8 bit). PyTorch's ONNX
exporter writes each ``FakeQuantize`` as a QuantizeLinear/DequantizeLinear pair with the same scale, so the ONNX file
computes what the fake-quantized network computed in training.

Batch norm is folded into the convolutions first (Ultralytics' ``fuse``), as the exported graph has it. The
detection decode stays float: the box/class output convolutions of the head and the DFL convolution get no
fake quantization (the PTQ path's ``head`` and ``dfl`` groups), and neither does anything after them.

That is the ``conv`` placement. OpenVINO (NNCF) quantizes elsewhere: where a tensor is *written*, after the activation
(and after a residual Add), and it fuses such a quantizer into the convolution that writes the tensor; a quantizer
where a convolution *reads* (a Concat, a Split half) stays a separate pass. The ``nncf`` placement trains with the
quantizers where NNCF puts them for yolo11: the image, every weight, the output of every ``Conv`` block's activation
(except the block that only the decode reads) and of every residual block (``Bottleneck``, ``PSABlock``). Its QDQ
file is then already in the placement OpenVINO fuses.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.ao.quantization import FakeQuantize, HistogramObserver, MovingAveragePerChannelMinMaxObserver


def activation_fq() -> FakeQuantize:
    """u8 per-tensor affine activation quantizer. Its range comes from a histogram (L2-optimal clipping): like the
    PTQ path's percentile calibration, it does not spend range on rare outliers."""
    return FakeQuantize(observer=HistogramObserver, quant_min=0, quant_max=255, dtype=torch.quint8,
                        qscheme=torch.per_tensor_affine)


def weight_fq() -> FakeQuantize:
    """s8 symmetric per-output-channel weight quantizer; its scale follows the weights as they train
    (moving-average min/max, as PyTorch's default QAT weight quantizer)."""
    return FakeQuantize(observer=MovingAveragePerChannelMinMaxObserver, quant_min=-128, quant_max=127,
                        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0)


#: where QAT puts the activation quantizers: ``conv`` = each convolution's input and output (onnxruntime's
#: ``QLinearConv``), ``nncf`` = where each tensor is written (OpenVINO's fusion, NNCF's placement)
PLACEMENTS = ("conv", "nncf")


class QATConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose weight, and optionally input and output, are fake-quantized. State-dict keys of the plain
    convolution (``weight``, ``bias``) are kept; the quantizers add ``weight_fq.*`` (and ``input_fq.*``,
    ``output_fq.*``)."""

    @classmethod
    def from_float(cls, conv: nn.Conv2d, inputs: bool = True, outputs: bool = True) -> "QATConv2d":
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                conv.groups, conv.bias is not None, conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
        q.weight, q.bias = conv.weight, conv.bias
        q.weight_fq = weight_fq()
        q.input_fq = activation_fq() if inputs else None
        q.output_fq = activation_fq() if outputs else None
        return q.to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # fake quantization runs in float32 (under AMP the convolution itself still runs in half precision)
        x = x.float() if self.input_fq is None else self.input_fq(x.float())
        y = self._conv_forward(x, self.weight_fq(self.weight.float()), None if self.bias is None else self.bias.float())
        return y if self.output_fq is None else self.output_fq(y.float())


class FakeQuantOutput(nn.Module):
    """``module`` with its output fake-quantized (u8, one scale per tensor): a quantizer where a tensor is written."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.output_fq = activation_fq()

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.output_fq(self.module(*args, **kwargs).float())


def quantizers(model: nn.Module) -> Iterable[tuple[str, FakeQuantize]]:
    """Every (name, FakeQuantize) of ``model``."""
    return ((n, m) for n, m in model.named_modules() if isinstance(m, FakeQuantize))


def _head_branches(model: nn.Module) -> Iterable[nn.Module]:
    """Every box/class branch of the head: ``cv2.i``/``cv3.i``, and YOLO26's ``one2one_cv2``/``one2one_cv3``."""
    head = model.model[-1]
    for attr in ("cv2", "cv3", "one2one_cv2", "one2one_cv3"):
        yield from getattr(head, attr, None) or []


def _children(model: nn.Module, wanted) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, name, child) of every child module of ``model`` that ``wanted(child)`` selects."""
    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if wanted(child)]


def decode_convs(model: nn.Module) -> set[int]:
    """ids of the convolutions of the detection decode: the last conv of every box/class branch of the head
    (:func:`_head_branches`) and the DFL conv."""
    head = model.model[-1]
    found = set()
    for branch in _head_branches(model):
        last = branch[-1] if isinstance(branch, nn.Sequential) else branch
        conv = getattr(last, "conv", last)
        if isinstance(conv, nn.Conv2d):
            found.add(id(conv))
    dfl = getattr(head, "dfl", None)
    if isinstance(dfl, nn.Module):
        found |= {id(m) for m in dfl.modules() if isinstance(m, nn.Conv2d)}
    return found


def decode_inputs(model: nn.Module) -> set[int]:
    """ids of the ``Conv`` blocks whose output only the decode reads: the last block before each box/class branch's
    output convolution."""
    from ultralytics.nn.modules import Conv

    found = set()
    for branch in _head_branches(model):
        if isinstance(branch, nn.Sequential) and len(branch) > 1:
            blocks = [m for m in branch[:-1].modules() if isinstance(m, Conv)]
            found |= {id(blocks[-1])} if blocks else set()
    return found


def insert_fake_quant(model: nn.Module, placement: str = "conv") -> tuple[int, int]:
    """Replace every ``nn.Conv2d`` of ``model`` outside the decode by a :class:`QATConv2d`, in place, with the
    activation quantizers of ``placement`` (:data:`PLACEMENTS`). Returns (quantized convs, float-kept convs)."""
    if placement not in PLACEMENTS:
        raise ValueError(f"unknown QAT placement {placement!r}: choose one of {', '.join(PLACEMENTS)}")
    skip = decode_convs(model)
    convs = _children(model, lambda m: type(m) is nn.Conv2d and id(m) not in skip)
    for k, (parent, name, child) in enumerate(convs):
        both = placement == "conv"  # nncf: the weights here; the image at the first convolution
        setattr(parent, name, QATConv2d.from_float(child, inputs=both or k == 0, outputs=both))
    if placement == "nncf":
        from ultralytics.nn.modules import Conv
        from ultralytics.nn.modules.block import Bottleneck, PSABlock

        quiet = decode_inputs(model)
        blocks = [m for m in model.modules() if isinstance(m, Conv) and id(m) not in quiet]
        residual = _children(model, lambda m: isinstance(m, (Bottleneck, PSABlock)) and getattr(m, "add", False))
        for parent, name, child in residual:
            setattr(parent, name, FakeQuantOutput(child))
        for block in blocks:
            block.act = FakeQuantOutput(block.act)
    return len(convs), len(skip)


def set_observers(model: nn.Module, activations: bool, weights: bool = True) -> None:
    """Switch range observation on/off: activation ranges are calibrated once, then held fixed; weight scales keep
    following the weights while training unless ``weights`` is False (export freezes everything)."""
    for _, fq in quantizers(model):
        on = weights if fq.qscheme == torch.per_channel_symmetric else activations
        fq.enable_observer(on)


def set_fake_quant(model: nn.Module, enabled: bool) -> None:
    """Switch the fake quantization itself on/off (off: the convolutions compute in float)."""
    for _, fq in quantizers(model):
        fq.enable_fake_quant(enabled)


def is_qat(model: nn.Module) -> bool:
    """Whether ``model`` carries this module's fake quantization."""
    return any(isinstance(m, QATConv2d) for m in model.modules())


__all__ = ["PLACEMENTS", "QATConv2d", "FakeQuantOutput", "activation_fq", "weight_fq", "decode_convs", "decode_inputs",
           "insert_fake_quant", "set_observers", "set_fake_quant", "quantizers", "is_qat"]
