"""model=mlp_bn is the PyTorch-GAN scripts' networks (the peer of scripts/bench_train.py --nets peer).

Oracle: those networks written out layer by layer the way the scripts build them (Linear,
BatchNorm1d(out, 0.8)
after every hidden layer but the first, LeakyReLU(0.2), tanh; critic 784 -> 512 -> 256 -> 1): same layer
types in the same order, same shapes, same BatchNorm eps, and the same function once weights are shared.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn

from tests.helpers import compose_cfg


def _peer_generator():
    def block(fan_in, fan_out, normalize=True):
        return [nn.Linear(fan_in, fan_out), *([nn.BatchNorm1d(fan_out, 0.8)] if normalize else []),
                nn.LeakyReLU(0.2)]
    return nn.Sequential(*block(100, 128, normalize=False), *block(128, 256), *block(256, 512),
                         *block(512, 1024), nn.Linear(1024, 784), nn.Tanh())


def _peer_critic():
    return nn.Sequential(nn.Linear(784, 512), nn.LeakyReLU(0.2), nn.Linear(512, 256), nn.LeakyReLU(0.2),
                         nn.Linear(256, 1))


def _layers(net):
    return [m for m in net.modules() if not list(m.children())]


def _same_structure(ours, peer):
    a, b = _layers(ours), _layers(peer)
    a = [m for m in a if not isinstance(m, nn.Identity)]
    assert [type(m) for m in a] == [type(m) for m in b]
    for x, y in zip(a, b):
        if isinstance(x, nn.BatchNorm1d):
            assert (x.num_features, x.eps) == (y.num_features, y.eps)
        if isinstance(x, nn.LeakyReLU):
            assert x.negative_slope == y.negative_slope
    assert [p.shape for p in ours.parameters()] == [p.shape for p in peer.parameters()]


def test_mlp_bn_is_the_peer_scripts_networks():
    cfg = compose_cfg("dataset=mnist", "model=mlp_bn", "method=gan")
    generator, critic = instantiate(cfg.model.nets.generator), instantiate(cfg.model.nets.critic)
    peer_g, peer_d = _peer_generator(), _peer_critic()
    _same_structure(generator, peer_g)
    _same_structure(critic, peer_d)
    # the same function: copy our weights into the peer (parameter order matches) and compare outputs
    for net, peer in ((generator, peer_g), (critic, peer_d)):
        with torch.no_grad():
            for p, q in zip(net.parameters(), peer.parameters()):
                q.copy_(p)
    torch.manual_seed(0)
    z, x = torch.randn(16, 100), torch.rand(16, 1, 28, 28) * 2 - 1
    torch.testing.assert_close(generator(z).flatten(1), peer_g(z))
    torch.testing.assert_close(critic(x), peer_d(x.flatten(1)).squeeze(1))
