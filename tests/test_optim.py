"""Optimizer kernels (otgan_lab.optim): auto picks torch's fused kernel, the update is still Adam's."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from otgan_lab import build
from otgan_lab.optim import build_optimizer, implementation_kwargs
from tests.helpers import compose_cfg, tiny_trainer


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(7, 5, generator=g)),
            torch.nn.Parameter(torch.randn(5, generator=g))]


def _grads(params, step):
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=g) for p in params]


def test_auto_takes_fused_adam_and_foreach_rmsprop_on_cpu():
    adam = build_optimizer(partial(torch.optim.Adam, lr=1e-3), _params(), "auto")
    assert adam.param_groups[0]["fused"] is True
    rmsprop = build_optimizer(partial(torch.optim.RMSprop, lr=1e-3), _params(), "auto")  # no fused RMSprop
    assert rmsprop.param_groups[0]["foreach"] is True
    loop = build_optimizer(partial(torch.optim.Adam, lr=1e-3), _params(), "for_loop")
    assert loop.param_groups[0]["foreach"] is False and not loop.param_groups[0]["fused"]


def test_methods_build_their_optimizers_through_the_trainer_setting():
    for method, expected in (("gan", "fused"), ("wgan_clip", "foreach")):
        m = build.build_method(compose_cfg(f"method={method}"), torch.device("cpu"))
        for opt in m.configure_optimizers("auto").values():
            assert opt.param_groups[0][expected] is True


def test_a_choice_in_the_optimizer_config_wins():
    assert implementation_kwargs(partial(torch.optim.Adam, lr=1e-3, foreach=False), "cpu", "fused") == {}
    opt = build_optimizer(partial(torch.optim.Adam, lr=1e-3, fused=False), _params(), "auto")
    assert opt.param_groups[0]["fused"] is False


def test_unavailable_kernels_are_clear_errors():
    with pytest.raises(ValueError, match="no fused RMSprop on cpu"):
        implementation_kwargs(partial(torch.optim.RMSprop, lr=1e-3), "cpu", "fused")
    with pytest.raises(ValueError, match="unknown optimizer implementation 'fast'"):
        implementation_kwargs(partial(torch.optim.Adam, lr=1e-3), "cpu", "fast")
    with pytest.raises(build.ConfigError, match="trainer.optimizer_impl must be one of"):
        build.check_config(compose_cfg("trainer.optimizer_impl=fast"))


def test_fused_adam_first_step_is_the_closed_form():
    # After one step the bias-corrected moments are m_hat = g and v_hat = g^2: p1 = p0 - lr * g / (|g| + eps).
    lr, eps = 0.01, 1e-8
    params = _params()
    start = [p.detach().clone() for p in params]
    opt = build_optimizer(partial(torch.optim.Adam, lr=lr, betas=(0.5, 0.9), eps=eps), params, "fused")
    grads = _grads(params, 0)
    for p, g in zip(params, grads):
        p.grad = g
    opt.step()
    for p, p0, g in zip(params, start, grads):
        torch.testing.assert_close(p.detach(), p0 - lr * g / (g.abs() + eps), rtol=0, atol=1e-7)


@pytest.mark.parametrize("make", [partial(torch.optim.Adam, lr=1e-2, betas=(0.5, 0.9)),
                                  partial(torch.optim.RMSprop, lr=1e-2)])
def test_every_kernel_follows_torch_reference_loop(make):
    """auto/fused/foreach agree with torch's single-tensor implementation over several steps (to rounding)."""
    for impl in ("auto", "foreach"):
        params, reference = _params(), _params()
        opt, ref_opt = build_optimizer(make, params, impl), build_optimizer(make, reference, "for_loop")
        for step in range(5):
            for p, q, g in zip(params, reference, _grads(params, step)):
                p.grad, q.grad = g.clone(), g.clone()
            opt.step()
            ref_opt.step()
        for p, q, p0 in zip(params, reference, _params()):
            assert not torch.equal(p.detach(), p0)
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-5, atol=1e-6)


def test_resume_keeps_this_runs_kernel_not_the_checkpoints(tmp_path):
    cfg = compose_cfg("method=gan")
    old = tiny_trainer(cfg, tmp_path / "old", steps=2, optimizer_impl="for_loop")
    old.fit()
    path = old.save_checkpoint()
    new = tiny_trainer(cfg, tmp_path / "new", steps=4, optimizer_impl="auto")
    new.resume(path)
    assert all(opt.param_groups[0]["fused"] is True for opt in new.optimizers.values())
    assert new.fit().status == "completed"
