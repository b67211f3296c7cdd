"""Temporary, prunable stand-ins for the YOLO blocks whose ``chunk``/``split`` a dependency graph cannot follow.

``C2f``/``C3k2`` and ``C2PSA`` split one 1x1 conv (``cv1``, 2c outputs) into two halves ``a`` and ``b``. Torch-pruning
maps a split's outputs to its consumers by tracing order, which is wrong as soon as a half has several consumers
(``b`` feeds the next block *and* the concat), and stock ``chunk(2)`` needs both halves to keep the same width.

:class:`SplitCSP` therefore holds ``cv1`` as two convs ``cv0`` (half ``a``) and ``cv1`` (half ``b``). While the graph is
traced (``couple=True``) it adds ``0 * b`` to ``a``: a free element-wise tie that puts both halves in one pruning
group, so channel ``i`` of ``a`` and of ``b`` are kept or removed together and the halves stay equal.
:func:`merge_blocks` folds every stand-in back into the *original stock class* (``cv1`` re-concatenated, ``c``
updated), so pruned checkpoints unpickle in stock Ultralytics.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["SplitCSP", "split_blocks", "merge_blocks", "slice_conv", "cat_convs"]


def _copy_conv(conv: nn.Module) -> nn.Module:
    """Deep copy of a ``Conv`` that still shares its activation (Ultralytics shares one SiLU across all Convs)."""
    new = copy.deepcopy(conv)
    if hasattr(conv, "act"):
        new.act = conv.act
    return new


def slice_conv(conv: nn.Module, keep: slice) -> nn.Module:
    """Copy of an Ultralytics ``Conv`` (conv + optional bn + act) keeping output channels ``keep``."""
    new = _copy_conv(conv)
    c = new.conv
    c.weight = nn.Parameter(c.weight.data[keep].clone())
    if c.bias is not None:
        c.bias = nn.Parameter(c.bias.data[keep].clone())
    c.out_channels = c.weight.shape[0]
    bn = getattr(new, "bn", None)
    if isinstance(bn, nn.BatchNorm2d):
        bn.weight = nn.Parameter(bn.weight.data[keep].clone())
        bn.bias = nn.Parameter(bn.bias.data[keep].clone())
        bn.running_mean = bn.running_mean[keep].clone()
        bn.running_var = bn.running_var[keep].clone()
        bn.num_features = bn.weight.shape[0]
    return new


def cat_convs(a: nn.Module, b: nn.Module) -> nn.Module:
    """One ``Conv`` whose outputs are ``a``'s followed by ``b``'s (same input, kernel and activation)."""
    new = _copy_conv(a)
    c, cb = new.conv, b.conv
    c.weight = nn.Parameter(torch.cat([c.weight.data, cb.weight.data]))
    if c.bias is not None:
        c.bias = nn.Parameter(torch.cat([c.bias.data, cb.bias.data]))
    c.out_channels = c.weight.shape[0]
    bn, bnb = getattr(new, "bn", None), getattr(b, "bn", None)
    if isinstance(bn, nn.BatchNorm2d):
        bn.weight = nn.Parameter(torch.cat([bn.weight.data, bnb.weight.data]))
        bn.bias = nn.Parameter(torch.cat([bn.bias.data, bnb.bias.data]))
        bn.running_mean = torch.cat([bn.running_mean, bnb.running_mean])
        bn.running_var = torch.cat([bn.running_var, bnb.running_var])
        bn.num_features = bn.weight.shape[0]
    return new


def _kind(block: nn.Module) -> str | None:
    """'chain' for blocks running stock ``C2f.forward`` (C2f, C3k2, ...), 'seq' for ``C2PSA``, else None."""
    from ultralytics.nn.modules.block import C2PSA, C2f

    if isinstance(block, C2f) and type(block).forward is C2f.forward:
        return "chain"
    if type(block) is C2PSA:
        return "seq"
    return None


class SplitCSP(nn.Module):
    """Prunable form of a C2f-family (``kind='chain'``) or C2PSA (``kind='seq'``) block; used only while pruning.

    Input (B, C1, H, W) -> output (B, C2, H, W), numerically identical to the wrapped block.
    """

    def __init__(self, block: nn.Module):
        super().__init__()
        self.kind = _kind(block)
        if self.kind is None:
            raise TypeError(f"{type(block).__name__} has no prunable split form")
        c = block.cv1.conv.out_channels // 2
        self.cv0 = slice_conv(block.cv1, slice(0, c))  # half a
        self.cv1 = slice_conv(block.cv1, slice(c, 2 * c))  # half b
        self.m, self.cv2 = block.m, block.cv2
        self.couple = False
        for k in ("f", "i", "type", "np"):  # Ultralytics layer bookkeeping read by DetectionModel._predict_once
            if hasattr(block, k):
                setattr(self, k, getattr(block, k))
        object.__setattr__(self, "_shell", block)  # the stock object to fold back into (not a registered child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same maths as the stock block, with the halves produced by two convs."""
        a, b = self.cv0(x), self.cv1(x)
        if self.couple:  # tie the halves channel-by-channel in the traced graph; adds exactly zero
            a = a + 0 * b
        if self.kind == "seq":
            return self.cv2(torch.cat((a, self.m(b)), 1))
        y = [a, b]
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))

    def to_stock(self) -> nn.Module:
        """The original stock block with this (possibly pruned) stand-in's weights."""
        if self.cv0.conv.out_channels != self.cv1.conv.out_channels:
            raise RuntimeError("split halves were pruned to different widths; the coupling tie was not traced")
        block = self._shell
        block.cv1 = cat_convs(self.cv0, self.cv1)
        block.m, block.cv2 = self.m, self.cv2
        block.c = self.cv0.conv.out_channels
        return block


def _replace(model: nn.Module, swap) -> int:
    """Replace every child ``m`` for which ``swap(m)`` returns a module; returns the number replaced."""
    n = 0
    for name, child in list(model.named_children()):
        new = swap(child)
        if new is not None:
            setattr(model, name, new)
            n += 1
        else:
            n += _replace(child, swap)
    return n


def split_blocks(model: nn.Module) -> int:
    """In place: wrap every C2f-family and C2PSA block in :class:`SplitCSP`. Returns the number wrapped."""
    return _replace(model, lambda m: SplitCSP(m) if _kind(m) else None)


def merge_blocks(model: nn.Module) -> int:
    """In place: fold every :class:`SplitCSP` back into its stock block. Returns the number folded."""
    return _replace(model, lambda m: m.to_stock() if isinstance(m, SplitCSP) else None)
