"""Terms on the codes themselves."""

from __future__ import annotations

import torch


def quantization_loss(codes: torch.Tensor) -> torch.Tensor:
    """Mean squared distance between the real-valued codes and their signs."""
    return (codes - torch.sign(codes).detach()).pow(2).mean()


def bit_balance_loss(codes: torch.Tensor) -> torch.Tensor:
    """Each bit +1 and -1 equally often over the batch: the squared batch mean of every bit."""
    return codes.mean(dim=0).pow(2).mean()
