"""Small numerical kernels shared across packages (a leaf module: it imports torch and math only).

``log1mexp`` is used by the DRS score (samplers/drs.py) and by MD-GAN's log(λ − L) (losses/mdgan.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG2 = math.log(2.0)


def log1mexp(u: Tensor) -> Tensor:
    """log(1 − e^u) for u < 0, accurate everywhere (Mächler 2012): expm1 near 0, log1p far from it.

    Each branch is evaluated on an input that is safe for it, so torch.where never back-propagates an
    inf from the branch it discards.
    """
    near_zero = u > -_LOG2
    a = torch.log(-torch.expm1(torch.where(near_zero, u, torch.full_like(u, -1.0))))
    b = torch.log1p(-torch.exp(torch.where(near_zero, torch.full_like(u, -1.0), u)))
    return torch.where(near_zero, a, b)
