"""LSGAN's update (Mao et al. 2017) against its losses written out here, as tests/test_updates_adversarial.py
checks the other adversarial methods (its plumbing is reused: recorded batches, plain SGD, hand updates)."""

from __future__ import annotations

import copy

import pytest
import torch

import tests.test_updates_adversarial as adv
from otgan_lab.methods.lsgan import LSGAN


@pytest.mark.parametrize("a, b, c", [(0.0, 1.0, 1.0), (-1.0, 1.0, 0.0)])  # 0-1 coding, the paper's chi^2 form
def test_lsgan_one_step_matches_the_paper(float64, a, b, c):
    n, z_dim = 64, 4
    torch.manual_seed(0)
    G, D = adv.Recorder(adv.generator_net(z_dim)), adv.Critic(2, bias=2.0)  # scores off every target
    G0, D0 = copy.deepcopy(G.net), copy.deepcopy(D)
    m = LSGAN(name="lsgan", batch_size=n, prior={"kind": "normal", "dim": z_dim}, a=a, b=b, c=c,
              optim={"generator": adv.sgd(adv.LR_G), "critic": adv.sgd(adv.LR_D)}, generator=G, critic=D)
    real = adv.RealBatches(2)
    logs = m.train_step(real, adv.context(m))
    assert real.sizes == [n] and len(G.inputs) == 2  # one real batch; fakes for D, fresh noise for G
    x, (z_d, z_g) = real.batches[0], G.inputs

    G1, D1 = copy.deepcopy(G0), copy.deepcopy(D0)
    with torch.no_grad():
        fake = G1(z_d)
    critic_loss = 0.5 * ((D1(x) - b) ** 2).mean() + 0.5 * ((D1(fake) - a) ** 2).mean()
    adv.sgd_step(D1, critic_loss, adv.LR_D)
    generator_loss = 0.5 * ((D1(G1(z_g)) - c) ** 2).mean()  # against the updated critic
    adv.sgd_step(G1, generator_loss, adv.LR_G)

    adv.assert_log(logs, "critic_loss", critic_loss)
    adv.assert_log(logs, "generator_loss", generator_loss)
    adv.assert_update(D, D1, D0, "critic")
    adv.assert_update(G.net, G1, G0, "generator")
