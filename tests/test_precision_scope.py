"""fp32_modules: chosen networks or layers compute in float32 while the rest of a step runs under autocast.

Oracles: the same module run with autocast switched off by hand (torch's own), and dtype facts of autocast.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from otgan_lab import build
from otgan_lab.amp import keep_fp32
from otgan_lab.errors import ConfigError
from tests.helpers import compose_cfg


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))


def _bf16():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_a_kept_layer_computes_in_float32_and_matches_full_precision():
    net, x = _net(), torch.randn(32, 8)
    keep_fp32(net, ["2"], "cpu")
    with _bf16():
        hidden = net[1](net[0](x))                       # autocast: bfloat16
        out = net(x)
    assert hidden.dtype == torch.bfloat16
    assert out.dtype == torch.float32
    # oracle: the last layer applied by hand with autocast off, to the bf16 hidden state upcast
    with torch.autocast("cpu", enabled=False):
        expected = net[2](hidden.float())
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    # and not what bf16 would give for the last layer
    with _bf16():
        bf16_last = nn.functional.linear(hidden, net[2].weight, net[2].bias)
    assert not torch.equal(bf16_last.float(), out)


def test_a_kept_network_has_full_precision_gradients():
    net, x = _net(), torch.randn(32, 8)
    reference = copy.deepcopy(net)
    keep_fp32(net, ["0", "2"], "cpu")       # every Linear: the whole net in float32
    with _bf16():
        loss = net(x).square().mean()
    loss.backward()                                       # outside autocast, as ctx.optimize does
    reference(x).square().mean().backward()               # plain fp32, no autocast
    for p, q in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7)


def test_outside_autocast_it_changes_nothing_and_state_dict_keys_stay():
    net, x = _net(), torch.randn(4, 8)
    before = net(x)
    keys = list(net.state_dict())
    keep_fp32(net, ["0", "2"], "cpu")
    assert torch.equal(net(x), before)
    assert list(net.state_dict()) == keys


def test_a_deep_copy_keeps_its_own_hooks():
    """The EMA deep-copies the generator: the copy must compute with its own weights in float32."""
    net, x = _net(), torch.randn(4, 8)
    keep_fp32(net, ["2"], "cpu")
    twin = copy.deepcopy(net)
    with torch.no_grad():
        twin[2].weight.mul_(2.0)
    with _bf16():
        out, out_twin = net(x), twin(x)
    assert out.dtype == out_twin.dtype == torch.float32
    assert not torch.equal(out, out_twin)


def test_an_error_inside_a_kept_module_does_not_leave_autocast_off():
    class Boom(nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    net = nn.Sequential(nn.Linear(8, 8), Boom())
    keep_fp32(net, ["1"], "cpu")
    with _bf16():
        with pytest.raises(RuntimeError, match="boom"):
            net(torch.randn(2, 8))
        assert torch.is_autocast_enabled("cpu")
        assert nn.Linear(8, 8)(torch.randn(2, 8)).dtype == torch.bfloat16


def test_build_applies_the_config_and_refuses_a_wrong_path():
    cfg = compose_cfg("method=gan", "precision=bf16", "fp32_modules=[critic.head]")
    method = build.build_method(cfg, torch.device("cpu"))
    with _bf16():
        scores = method.nets["critic"](torch.randn(5, 2))
    assert scores.dtype == torch.float32
    with _bf16():
        assert method.nets["generator"](torch.randn(5, method.z_dim)).dtype == torch.bfloat16

    bad = compose_cfg("method=gan", "fp32_modules=[critic.nope]")
    with pytest.raises(ConfigError, match=r"critic\.nope.*critic\.head"):
        build.build_method(bad, torch.device("cpu"))
