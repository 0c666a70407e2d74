"""Minibatch energy distance of OT-GAN (Salimans, Zhang, Radford, Metaxas, ICLR 2018; METHODS.md §6).

With two independent real batches X, X' and two independent generated batches Y, Y' (critic embeddings,
each (..., K, d)), OT-GAN's per-iteration estimate of D^2_MED = 2 E[W(X,Y)] - E[W(X,X')] - E[W(Y,Y')] is

    L = W(X,Y) + W(X,Y') + W(X',Y) + W(X',Y') - 2 W(X,X') - 2 W(Y,Y')

where W(U, V) = <P, C> is the sharp Sinkhorn value for the learned cosine cost
C_ij = 1 - <u_i, v_j> / max(|u_i| |v_j|, 1e-8) (values in [0, 2]). P is a constant (envelope theorem, the
paper does not backpropagate through Sinkhorn): gradients reach all four embeddings through C only,
including the repulsive -2 W(Y, Y') term that keeps the generator's samples apart.

E[L] = 0 when all four batches are i.i.d. from one distribution; a single draw of L can be negative.
"""

from __future__ import annotations

import torch
from torch import Tensor

from otgan_lab.ot.sinkhorn import entropic_ot_loss


def cosine_cost(u: Tensor, v: Tensor, eps: float = 1e-8) -> Tensor:
    """Cosine distance matrix 1 - <u_i, v_j> / max(|u_i| |v_j|, eps): (..., n, d), (..., m, d) -> (..., n, m).

    Computed in float32 (float64 for float64 inputs) with autocast off: at Sinkhorn eps = 0.002 a bf16
    cost (3 significant digits) would blur the matching the critic learns.
    """
    dtype = torch.float64 if torch.float64 in (u.dtype, v.dtype) else torch.float32
    with torch.autocast(device_type=u.device.type, enabled=False):
        u, v = u.to(dtype), v.to(dtype)
        inner = u @ v.transpose(-2, -1)  # (..., n, m)
        norms = u.norm(dim=-1).unsqueeze(-1) * v.norm(dim=-1).unsqueeze(-2)  # (..., n, m)
        return 1.0 - inner / norms.clamp_min(eps)


# (first, second, weight) for the six terms of L; indices into (X, X', Y, Y').
_ENERGY_TERMS = ((0, 2, 1.0), (0, 3, 1.0), (1, 2, 1.0), (1, 3, 1.0), (0, 1, -2.0), (2, 3, -2.0))


def minibatch_energy_distance(
    emb_x: Tensor,
    emb_x2: Tensor,
    emb_y: Tensor,
    emb_y2: Tensor,
    *,
    eps: float,
    n_iters: int,
    **sinkhorn_kwargs,
) -> Tensor:
    """OT-GAN loss L for embeddings X, X' (real) and Y, Y' (generated), each (..., K, d) -> (...,).

    The critic ascends L, the generator descends it. ``eps``/``n_iters`` (and ``tol``, ``check_every``,
    ``eps_scaling``) go to :func:`~otgan_lab.ot.sinkhorn.sinkhorn`; the six transport problems are solved
    as one batched call when the batch sizes agree (the usual case), otherwise one call per distinct cost
    shape.
    """
    embeddings = (emb_x, emb_x2, emb_y, emb_y2)
    costs = [cosine_cost(embeddings[i], embeddings[j]) for i, j, _ in _ENERGY_TERMS]
    kwargs = dict(eps=eps, n_iters=n_iters, **sinkhorn_kwargs)

    terms: dict[int, Tensor] = {}
    for shape in dict.fromkeys(c.shape for c in costs):  # one shape, hence one call, when sizes agree
        idx = [k for k, c in enumerate(costs) if c.shape == shape]
        values = entropic_ot_loss(torch.stack([costs[k] for k in idx]), **kwargs)  # (len(idx), ...)
        terms.update(zip(idx, values.unbind(0)))
    return sum(weight * terms[k] for k, (_, _, weight) in enumerate(_ENERGY_TERMS))
