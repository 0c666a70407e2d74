"""EMA of generator weights (METHODS.md §12 unit tests)."""

from __future__ import annotations

import torch
from torch import nn

from otgan_lab.ema import EMA


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_zero_decay_copies_and_constant_weights_stay():
    net = _net()
    ema = EMA(net, decay=0.0)
    with torch.no_grad():
        net[0].weight.add_(1.0)
    ema.update(net, 1)
    assert torch.equal(ema.shadow[0].weight, net[0].weight)
    ema2 = EMA(net, decay=0.9)
    for step in range(5):
        ema2.update(net, step)
    assert torch.allclose(ema2.shadow[0].weight, net[0].weight)


def test_geometric_convergence_closed_form():
    net = _net()
    theta0 = net[0].weight.detach().clone()
    ema = EMA(net, decay=0.9)
    target = torch.full_like(theta0, 2.0)
    with torch.no_grad():
        net[0].weight.copy_(target)
    for step in range(7):
        ema.update(net, step)
    assert torch.allclose(ema.shadow[0].weight, target + 0.9**7 * (theta0 - target), atol=1e-6)


def test_shadow_has_no_grad_buffers_synced_and_swap_restores():
    net = _net()
    ema = EMA(net, decay=0.99)
    assert all(not p.requires_grad for p in ema.shadow.parameters())
    net.train()
    net(torch.randn(16, 3))  # moves BN running stats
    ema.update(net, 0)
    assert torch.equal(ema.shadow[1].running_mean, net[1].running_mean)
    live = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(5.0)
    ema.update(net, 1)
    moved = net[0].weight.detach().clone()
    with ema.applied(net):
        assert torch.allclose(net[0].weight, ema.shadow[0].weight)
    assert torch.equal(net[0].weight, moved) and not torch.equal(moved, live)
