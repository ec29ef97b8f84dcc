"""The vision tower's residual stream, laid out row-major once instead of re-copied 55 times.

SigLIP (MedGemma's vision tower) embeds an image with a 14 px convolution and hands on
`patch_embeds.flatten(2).transpose(1, 2)`: a (batch, 4096, 1152) view whose memory is still
channels-first. Every residual add keeps that layout, so each of the 55 layer norms copies its
input to row-major first (`aten::clone` inside `native_layer_norm`, a strided copy that is slow on
the CPU), and each add runs strided. Copying the embeddings once removes all of that; the
arithmetic is the same, operation for operation, so the image embeddings are bit-identical.

Measured on MedGemma 4B's tower (random bf16 weights, one 896 px image, 2 shared CPUs with AMX):
see docs/performance.md, "The vision tower".
"""

import torch
from torch import nn


def row_major(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    """A forward hook: the module's output, copied row-major if it is not already."""
    return output.contiguous()


def vision_embeddings(model: nn.Module) -> nn.Module | None:
    """The SigLIP embeddings module of a Gemma 3 image-text model, or None if it has none."""
    tower = getattr(getattr(model, "model", model), "vision_tower", None)
    if tower is None:
        return None
    # transformers 5 puts the embeddings on SiglipVisionModel itself; 4.x under .vision_model.
    tower = getattr(tower, "vision_model", tower)
    return getattr(tower, "embeddings", None)


def keep_residuals_row_major(model: nn.Module) -> bool:
    """Make the vision tower's embeddings row-major as they are made. True if a tower was found."""
    embeddings = vision_embeddings(model)
    if embeddings is None:
        return False
    embeddings.register_forward_hook(row_major)
    return True
