"""Loss and penalty unit tests against closed forms (METHODS.md §2-4, §12)."""

from __future__ import annotations

import math

import pytest
import torch

from otgan_lab.losses.adversarial import (
    gan_critic_loss,
    gan_generator_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from otgan_lab.losses.penalties import gradient_penalty, interpolate, r1_penalty
from otgan_lab.methods.wgan_clip import critic_steps


def _input_grad(f, x):
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(f(x).sum(), x, create_graph=True)[0]


def test_gan_losses_at_zero_logits():
    zeros = torch.zeros(16)
    assert gan_critic_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert gan_generator_loss(zeros).item() == pytest.approx(math.log(2))
    assert gan_generator_loss(zeros, "minimax").item() == pytest.approx(-math.log(2))


def test_non_saturating_gradient_is_negative_and_minimax_vanishes():
    logits = torch.linspace(-20, 20, 41, requires_grad=True)
    (g_ns,) = torch.autograd.grad(gan_generator_loss(logits) * len(logits), logits)
    assert (g_ns < 0).all()
    (g_mm,) = torch.autograd.grad(gan_generator_loss(logits, "minimax") * len(logits), logits)
    assert abs(g_mm[0].item()) < 1e-8 and abs(g_ns[0].item() + 1) < 1e-8  # at l -> -inf


def test_optimal_discriminator_is_the_log_density_ratio():
    # p_d, p_g on three points; minimising the critic loss over free logits gives log(p_d / p_g)
    p_d, p_g = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.3, 0.5])
    logits = torch.zeros(3, requires_grad=True)
    opt = torch.optim.LBFGS([logits], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = ((p_d * torch.nn.functional.softplus(-logits)).sum()
                + (p_g * torch.nn.functional.softplus(logits)).sum())
        loss.backward()
        return loss

    opt.step(closure)
    assert torch.allclose(logits.detach(), (p_d / p_g).log(), atol=1e-4)


def test_wasserstein_signs():
    real, fake = torch.tensor([2.0, 4.0]), torch.tensor([1.0, 1.0])
    assert wasserstein_critic_loss(real, fake).item() == pytest.approx(1.0 - 3.0)
    assert wasserstein_generator_loss(fake).item() == pytest.approx(-1.0)


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_of_linear_critic(norm, expected):
    torch.manual_seed(0)
    w = torch.randn(5)
    w = (w / w.norm() * norm).requires_grad_(True)
    x_hat = interpolate(torch.randn(32, 5), torch.randn(32, 5))
    gp = gradient_penalty(_input_grad(lambda x: x @ w + 3.0, x_hat))
    assert gp.item() == pytest.approx(expected, abs=1e-6)
    # double backprop: d penalty / d w = 2 (||w|| - 1) w / ||w||
    (grad_w,) = torch.autograd.grad(gp, w)
    assert torch.allclose(grad_w, 2 * (norm - 1) * w.detach() / norm, atol=1e-5)


def test_gradient_penalty_of_quadratic_critic_on_images():
    torch.manual_seed(1)
    x_hat = torch.randn(8, 1, 4, 4)
    gp = gradient_penalty(_input_grad(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), x_hat))
    expected = (x_hat.flatten(1).norm(dim=1) - 1).pow(2).mean()
    assert gp.item() == pytest.approx(expected.item(), rel=1e-5)


def test_interpolates_are_per_sample_points_on_the_segments():
    torch.manual_seed(2)
    real, fake = torch.randn(64, 1, 3, 3), torch.randn(64, 1, 3, 3)
    x_hat = interpolate(real, fake)
    eps = ((x_hat - fake) / (real - fake)).flatten(1)
    assert torch.allclose(eps, eps[:, :1].expand_as(eps), atol=1e-4)  # one eps per sample
    assert ((eps >= 0) & (eps <= 1)).all() and eps[:, 0].std() > 0.1  # different across samples


def test_r1_closed_forms():
    w = torch.tensor([3.0, 4.0])
    x = torch.randn(10, 2)
    assert r1_penalty(_input_grad(lambda x: x @ w, x), gamma=10.0).item() == pytest.approx(5.0 * 25.0)
    r1 = r1_penalty(_input_grad(lambda x: 0.5 * x.pow(2).sum(1), x), gamma=2.0)
    assert r1.item() == pytest.approx(x.pow(2).sum(1).mean().item(), rel=1e-5)


def test_dirac_gan_converges_with_r1_and_not_without():
    """Mescheder et al.: G(z) = theta, D(x) = psi * x, data at 0; alternating GD, step 0.1, through the
    project's loss and penalty functions."""

    def run(gamma, steps=3000):
        theta = torch.tensor([1.0], requires_grad=True)
        psi = torch.tensor([1.0], requires_grad=True)
        real = torch.zeros(1, 1)
        for _ in range(steps):
            x = real.clone().requires_grad_(True)
            logit_real = x[:, 0] * psi
            loss_d = gan_critic_loss(logit_real, (theta.detach() * psi).view(1))
            if gamma:
                loss_d = loss_d + r1_penalty(torch.autograd.grad(logit_real.sum(), x, create_graph=True)[0],
                                             gamma)
            (g_psi,) = torch.autograd.grad(loss_d, psi)
            with torch.no_grad():
                psi -= 0.1 * g_psi
            (g_theta,) = torch.autograd.grad(gan_generator_loss((theta * psi.detach()).view(1), "minimax"),
                                             theta)
            with torch.no_grad():
                theta -= 0.1 * g_theta
        return math.hypot(theta.item(), psi.item())

    assert run(gamma=1.0) < 1e-3
    assert run(gamma=0.0) > 0.5


def test_wgan_clip_schedule():
    assert [critic_steps(i, 5, True) for i in (0, 24)] == [100, 100]
    assert [critic_steps(i, 5, True) for i in (25, 499, 501)] == [5, 5, 5]
    assert critic_steps(500, 5, True) == 100 and critic_steps(1000, 5, True) == 100
    assert critic_steps(0, 5, False) == 5


def test_gan_losses_keep_saturated_gradients_under_bf16_autocast():
    """A critic trained under bf16 autocast emits bf16 logits; the losses' gradients must still be the fp32
    closed form d/dl softplus(-l) = sigmoid(l) - 1, which bf16 rounds to 0 or doubles for l >= 5."""
    from otgan_lab.methods.gan import GAN
    from otgan_lab.nets.mlp import MLPCritic, MLPGenerator

    logits = torch.tensor([4.0, 5.0, 6.0, 7.0, 8.0], dtype=torch.float64)
    expected = (torch.sigmoid(logits) - 1.0) / len(logits)  # the non-saturating generator loss's gradient
    bf16 = logits.to(torch.bfloat16).requires_grad_(True)  # 4..8 are exact in bf16
    gan_generator_loss(bf16).backward()
    torch.testing.assert_close(bf16.grad.double(), expected, rtol=1e-2, atol=0)  # the grad itself is bf16
    bf16.grad = None
    gan_critic_loss(-bf16, bf16).backward()  # real logits -l, fake logits l: sigmoid(l) / n per fake term
    torch.testing.assert_close(bf16.grad.double(), 2 * torch.sigmoid(logits) / len(logits), rtol=1e-2, atol=0)

    # a critic run under CPU bf16 autocast still hands float32 scores to losses and samplers
    method = GAN(name="gan", batch_size=4, prior={"kind": "normal", "dim": 3}, optim={},
                 generator=MLPGenerator(z_dim=3), critic=MLPCritic())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert method.nets["critic"](torch.randn(4, 2)).dtype == torch.bfloat16
        assert method.critic(torch.randn(4, 2)).dtype == torch.float32
