"""The pruned architecture from scratch: the control that tells what pruning costs from what the smaller width costs.

A pruned model is judged against the unpruned one given the same extra epochs. When it ends below, two things are
mixed: the damage of the cuts, and the lower ceiling of a narrower network. Training the *same* narrow network from
random weights, with the recipe the unpruned one had, measures the second alone ("Rethinking the value of network
pruning", Liu et al. 2019, asks the same question). :func:`reinitialized` gives that network: the pruned widths with
the weights Ultralytics' own constructor would give them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["reinitialized"]


def reinitialized(model: nn.Module) -> nn.Module:
    """A float copy of ``model`` (an Ultralytics detection model, pruned or not) with freshly initialised weights.

    What ``DetectionModel(yaml)`` does after building its layers, layer by layer in module order: PyTorch's default
    initialisation of every trainable convolution (Kaiming-uniform) and BatchNorm (scale 1, shift 0, running statistics
    reset), Ultralytics' BatchNorm settings (``initialize_weights``) and the Detect head's prior biases
    (``bias_init``). The DFL's convolution, a fixed projection onto 0..reg_max-1, keeps its weights and stays frozen;
    every other parameter is trainable again (a loaded checkpoint arrives with all of them frozen). Draws from torch's
    global generator: seed it for a reproducible copy. (The draws are not the constructor's own sequence, which also
    initialises modules it then discards, e.g. C3k2's first bottlenecks; the distributions are the same.)
    """
    from ultralytics.nn.modules.block import DFL
    from ultralytics.utils.torch_utils import initialize_weights

    from ..core.checkpoints import detect_head

    fresh = copy.deepcopy(model).float()
    fixed = {id(m.conv) for m in fresh.modules() if isinstance(m, DFL)}
    for m in fresh.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)) and id(m) not in fixed:
            m.reset_parameters()
            for p in m.parameters(recurse=False):
                p.requires_grad_(True)
    initialize_weights(fresh)
    head = detect_head(fresh)
    if head is not None and torch.is_tensor(head.stride) and head.stride.numel():
        head.bias_init()
    return fresh
