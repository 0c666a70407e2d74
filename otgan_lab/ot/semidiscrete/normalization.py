"""Code normalisation for AE-OT: centre and scale latent codes into [-1, 1] before the OT solve, and back.

The solver's learning rate and the extended map's angle threshold assume codes on that scale
(METHODS.md §9 pitfalls).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CodeStats:
    """codes = normalized * scale + shift; shift: (d,), scale: (d,) (equal entries for 'isotropic')."""

    shift: torch.Tensor
    scale: torch.Tensor


def normalize_codes(codes: torch.Tensor, mode: str = "isotropic") -> tuple[torch.Tensor, CodeStats]:
    """Centre codes (N, d) per dimension and scale them into [-1, 1] (METHODS.md §9 pitfalls).

    "isotropic" divides by the single largest |centred coordinate|, keeping the geometry (and so the OT
    map) up to scale; "per_dim" scales every dimension to [-1, 1] on its own, which changes the metric.
    """
    codes = codes.float()
    shift = codes.mean(dim=0)
    centred = codes - shift
    if mode == "isotropic":
        scale = centred.abs().max().clamp(min=1e-12).expand(codes.shape[1]).clone()
    elif mode == "per_dim":
        scale = centred.abs().amax(dim=0).clamp(min=1e-12)
    else:
        raise ValueError(f"mode must be 'isotropic' or 'per_dim', got {mode!r}")
    return centred / scale, CodeStats(shift=shift, scale=scale)


def denormalize_codes(normalized: torch.Tensor, stats: CodeStats) -> torch.Tensor:
    """Inverse of `normalize_codes`: back to the encoder's code space for decoding."""
    return normalized * stats.scale.to(normalized.device) + stats.shift.to(normalized.device)
