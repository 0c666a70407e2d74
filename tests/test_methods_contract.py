"""The method contract, checked for every method yaml in conf/method/ (new methods enrol automatically)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from otgan_lab import build
from tests.helpers import compose_cfg, options, tiny_trainer


def _params(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items() if v.dtype.is_floating_point}


@pytest.mark.parametrize("method", options("method"))
def test_contract(method, tmp_path):
    cfg = compose_cfg(f"method={method}", "dataset=ring8", "dataset.n_points=2048", "batch_size=64")
    trainer = tiny_trainer(cfg, tmp_path, steps=4)
    m = trainer.method
    before = _params(m)
    outcome = trainer.fit()
    assert outcome.status == "completed", outcome
    assert outcome.last_scalars
    assert all(torch.isfinite(torch.tensor(v)) for v in outcome.last_scalars.values())
    after = _params(m)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, f"{method}: no parameter changed after 4 steps"
    for name in m.required_nets:  # every trained network moved
        if m._optim_factories.get(name) is not None:
            assert any(k.startswith(f"nets.{name}.") for k in changed), f"{method}: {name} did not change"

    m.eval()
    with torch.no_grad():
        torch.manual_seed(7)
        x1 = m.sample(10)
        torch.manual_seed(7)
        x2 = m.sample(10)
    assert x1.shape == (10, 2)
    assert torch.equal(x1, x2), "same seed must give the same samples"
    if m.has_critic:
        assert m.critic(x1).shape == (10,)


@pytest.mark.parametrize("method", options("method"))
def test_method_declares_capabilities(method):
    cfg = compose_cfg(f"method={method}")
    from otgan_lab import build

    m = build.build_method(cfg, torch.device("cpu"))
    options = OmegaConf.to_container(cfg.method, resolve=True)
    assert m.capabilities == type(m).capabilities_for(options)  # one declaration, read from the class
    assert type(m).option_problems(options) == []  # the shipped defaults pass the method's own checks
    assert m.ema_module is m.generator_module is m.nets[m.capabilities.generator_net]
    assert (m.has_critic, m.critic_is_logit) == (m.capabilities.critic, m.capabilities.logit_critic)
    with pytest.raises(AttributeError):  # capabilities are fixed at construction
        m.has_critic = not m.has_critic
    assert m.prior_kind in ("normal", "uniform")
    assert m.prior(3).shape[0] == 3


@pytest.mark.parametrize("batchnorm", [False, True])
def test_critic_real_fake_matches_separate_passes(batchnorm):
    """The fused [real; fake] pass gives each batch's own scores; with BatchNorm it falls back to two passes
    (each batch normalised by its own statistics, as the papers compute them)."""
    overrides = ["method=gan", "dataset=ring8"] + (["+model.nets.critic.batchnorm=true"] if batchnorm else [])
    torch.manual_seed(0)
    method = build.build_method(compose_cfg(*overrides), torch.device("cpu"))
    assert method._critic_has_batchnorm() == batchnorm
    real, fake = torch.randn(16, 2), torch.randn(16, 2) + 3
    calls = []
    hook = method.critic_module.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    score_real, score_fake = method.critic_real_fake(real, fake)
    hook.remove()
    assert calls == ([16, 16] if batchnorm else [32])  # one fused pass unless BatchNorm needs two
    assert torch.allclose(score_real, method.critic(real), atol=1e-6)
    assert torch.allclose(score_fake, method.critic(fake), atol=1e-6)
