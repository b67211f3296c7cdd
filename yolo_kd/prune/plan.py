"""The pruning plan: torch-pruning's ``MetaPruner`` over a model whose split blocks are wrapped, its channel groups
scored once, their FLOPs predicted for any cut, and the cut applied.

Built on ``torch_pruning.pruner.MetaPruner`` (dependency graph, ignored layers, importance scoring) and
``torch_pruning.utils.count_ops_and_params`` (per-convolution MACs). What stays ours, and why:

- how many channels a group keeps (:func:`kept_channels`): ``MetaPruner.step`` rounds the kept count *down* to a
  multiple of ``round_to``, and can take a group below ``round_to``; ours rounds to the *nearest* multiple and never
  below ``round_to`` (64 channels at ratio 0.3 keep 48, not 40), so ratios and FLOPs targets cut what they say;
- per-group channel counts for a FLOPs target: ``MetaPruner`` prunes every group by one ratio (or per-module ratios),
  while :func:`yolo_kd.prune.pruner.prune_model` hands individual groups their channels back after the bisection;
  we therefore build the pruning groups with ``MetaPruner.DG`` ourselves instead of calling ``step()``;
- the FLOPs of a candidate cut are predicted from the unpruned per-conv MACs scaled by the channels each conv loses
  (40 bisection steps without pruning or re-counting a copy each time).
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator, Sequence

import torch
from torch import nn

from .blocks import SplitCSP, merge_blocks, split_blocks

#: name -> factory of a torch-pruning importance criterion
IMPORTANCES = {
    "l1": lambda tp: tp.importance.MagnitudeImportance(p=1),
    "l2": lambda tp: tp.importance.MagnitudeImportance(p=2),
    "bn": lambda tp: tp.importance.BNScaleImportance(),  # network slimming: |BN gamma|, summed over the group
    "lamp": lambda tp: tp.importance.LAMPImportance(p=2),
    "fpgm": lambda tp: tp.importance.FPGMImportance(p=2),
}


def kept_channels(c: int, ratio: float, round_to: int = 8) -> int:
    """Channels a group of ``c`` keeps at ``ratio``: ``c * (1 - ratio)`` rounded to the nearest multiple of
    ``round_to``, at least ``round_to`` and at most ``c`` (groups of ``round_to`` channels or fewer are kept whole)."""
    if c <= round_to:
        return c
    kept = int(math.floor(c * (1.0 - ratio) / round_to + 0.5)) * round_to
    return min(c, max(round_to, kept))


def _depthwise(conv: nn.Conv2d) -> bool:
    """A depthwise conv: one filter per channel, so its input channels are its output channels (counted once)."""
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@contextlib.contextmanager
def _traceable(model: nn.Module) -> Iterator[None]:
    """Eval mode, every parameter requiring grad and the split halves coupled, for graph tracing only."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    splits = [m for m in model.modules() if isinstance(m, SplitCSP)]
    try:
        for p, _ in flags:
            p.requires_grad_(True)
        for m in splits:
            m.couple = True
        with eval_mode(model), torch.enable_grad():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m in splits:
            m.couple = False


class PruningPlan:
    """``MetaPruner`` over a model whose split blocks are wrapped (:func:`split_blocks`), as a plan to cut from.

    Lists the prunable groups (coupled output channels of convs, with every conv/BN/concat they touch), scores each
    channel once with the chosen importance, predicts conv FLOPs for any cut without touching the model, and
    finally prunes the model in place (:meth:`apply`).
    """

    def __init__(self, model: nn.Module, importance: str, round_to: int, ignored: Sequence[nn.Module], trace_imgsz: int = 64):
        import torch_pruning as tp

        self.model, self.round_to, self.trace_imgsz = model, round_to, trace_imgsz
        p = next(model.parameters())
        x = torch.zeros(1, 3, trace_imgsz, trace_imgsz, device=p.device, dtype=p.dtype)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        with eval_mode(model):  # MACs of each conv of the unpruned model at trace_imgsz
            layer_macs = tp.utils.count_ops_and_params(model, x, layer_wise=True)[2]
        self._macs = {m: float(layer_macs.get(m) or 0.0) for m in convs}
        skip = {s for m in ignored for s in m.modules()}
        for sp in (m for m in model.modules() if isinstance(m, SplitCSP)):  # ignoring one half ignores both
            if sp.cv0.conv in skip or sp.cv1.conv in skip:
                skip |= set(sp.cv0.modules()) | set(sp.cv1.modules())
        with _traceable(model):
            self.pruner = tp.pruner.MetaPruner(model, x, importance=IMPORTANCES[importance](tp), pruning_ratio=0.0,
                                               ignored_layers=list(skip), round_to=round_to, root_module_types=[nn.Conv2d])
        self.dg = self.pruner.DG
        self.groups: list[dict] = []
        for group in self.dg.get_all_groups(ignored_layers=self.pruner.ignored_layers, root_module_types=[nn.Conv2d]):
            root = group[0].dep.target.module
            c = self.dg.get_out_channels(root)
            if c is None or c <= round_to:
                continue
            scores = self.pruner.estimate_importance(group)
            if scores is None:
                continue
            outs, ins = set(), {}
            for dep, idxs in group:
                m = dep.target.module
                if isinstance(m, nn.Conv2d):
                    if self.dg.is_out_channel_pruning_fn(dep.handler):
                        outs.add(m)
                    elif self.dg.is_in_channel_pruning_fn(dep.handler):
                        ins[m] = len(idxs) / c  # input channels lost per channel of this group (1 through a concat)
            self.groups.append(dict(root=root, channels=c, scores=scores.cpu(), outs=outs, ins=ins))
        costs = [self.channel_macs(g) for g in self.groups]
        mean = sum(costs) / max(len(costs), 1) or 1.0
        for g, cost in zip(self.groups, costs):
            g["cost"] = max(cost / mean, 1e-6)  # MACs one channel of the group costs, relative to the mean group's

    def channel_macs(self, group: dict) -> float:
        """MACs (at ``trace_imgsz``) that one channel of ``group`` costs in the unpruned model: its share of the
        convs it is an output of, plus its share of the (non-depthwise) convs it feeds."""
        macs = sum(self._macs.get(m, 0.0) / m.out_channels for m in group["outs"])
        for m, f in group["ins"].items():
            if not _depthwise(m) and m not in group["outs"]:
                macs += self._macs.get(m, 0.0) * f / m.in_channels
        return macs

    def removed(self, ratio: float) -> list[int]:
        """Channels each group loses at a uniform ``ratio`` (see :func:`kept_channels`)."""
        return [g["channels"] - kept_channels(g["channels"], ratio, self.round_to) for g in self.groups]

    def removed_below(self, threshold: float, alpha: float = 1.0, max_ratio: float = 0.9) -> list[int]:
        """Channels each group loses when pruned *globally*: every channel whose importance per unit of cost,
        ``score / cost ** alpha``, is under ``threshold`` goes (kept counts rounded as in :func:`kept_channels`, and no
        group loses more than ``max_ratio`` of its channels). ``alpha=0`` ranks by importance alone (scores are
        normalised within each group, so they compare across groups); ``alpha=1`` by importance per MAC, which
        spends the cut where channels are expensive: the high-resolution layers."""
        out = []
        for g in self.groups:
            c = g["channels"]
            n = int((g["scores"] / g["cost"] ** alpha < threshold).sum())
            kept = max(kept_channels(c, n / c, self.round_to), kept_channels(c, max_ratio, self.round_to))
            out.append(c - kept)
        return out

    def max_key(self, alpha: float = 1.0) -> float:
        """A threshold above every channel's ``score / cost ** alpha``: :meth:`removed_below` at it cuts the most."""
        return max(float((g["scores"] / g["cost"] ** alpha).max()) for g in self.groups) * 1.001 + 1e-9 if self.groups else 1.0

    def conv_macs(self, removed: Sequence[int], imgsz: int | None = None) -> float:
        """Multiply-accumulates of all convs once each group lost ``removed[i]`` channels, for an ``imgsz`` image:
        each conv's unpruned MACs scaled by the share of its output (and, unless depthwise, input) channels kept."""
        lost_out, lost_in = dict.fromkeys(self._macs, 0.0), dict.fromkeys(self._macs, 0.0)
        for g, n in zip(self.groups, removed):
            for m in g["outs"]:
                lost_out[m] += n
            for m, f in g["ins"].items():
                lost_in[m] += n * f
        macs = 0.0
        for m, base in self._macs.items():
            co, ci = m.out_channels, m.in_channels
            macs += base * (co - lost_out[m]) / co * (1.0 if _depthwise(m) else (ci - lost_in[m]) / ci)
        return macs * ((imgsz or self.trace_imgsz) / self.trace_imgsz) ** 2

    def apply(self, removed: Sequence[int], zero: bool = False) -> None:
        """Prune in place: group ``i`` drops its ``removed[i]`` least important channels.

        With ``zero=True`` the channels stay and are silenced instead: the scale and shift of every BatchNorm in their
        group are set to 0, so the channels output exactly 0 (SiLU(0) = 0) and removing them later changes nothing.
        """
        for g, n in zip(self.groups, removed):
            if n > 0:
                idxs = torch.argsort(g["scores"])[:n].tolist()
                fn = self.dg.get_pruner_of_module(g["root"]).prune_out_channels
                group = self.dg.get_pruning_group(g["root"], fn, idxs)
                if not self.dg.check_pruning_group(group):
                    continue
                if not zero:
                    group.prune()
                    continue
                with torch.no_grad():
                    for dep, bn_idxs in group:
                        bn = dep.target.module
                        if isinstance(bn, nn.BatchNorm2d):
                            bn.weight[list(bn_idxs)] = 0.0
                            bn.bias[list(bn_idxs)] = 0.0


@contextlib.contextmanager
def split_wrapped(model: nn.Module) -> Iterator[nn.Module]:
    """Wrap the split blocks for the duration of the block, folding them back to stock afterwards (even on error)."""
    split_blocks(model)
    try:
        yield model
    finally:
        merge_blocks(model)
