"""AE-OT-GAN (An, Guo, Zhang, Lei, Gu, 2020): AE-OT's codes and decoder as the start of a GAN.

Phase 1 (steps < ae_steps): autoencoder steps as in AE-OT. Phase 2 (once, at step ae_steps): encode
`ot.n_codes` training samples, solve semi-discrete OT to the codes and freeze the encoder. Phase 3: a GAN
whose generator is the decoder (so it starts from the AE's weights), fed with codes from the extended OT
map; its loss is the non-saturating GAN loss plus a pairing loss pair_weight * MSE(G(E(x)), x) on real
pairs, which keeps G a decoder of the OT targets while the critic sharpens its samples.

Only the abstract is known (METHODS.md §9); choices made here: NS-GAN with optional R1 (logit critic, so
DRS/MH samplers apply); pairing loss as a per-element MSE with weight 10; the critic also trains during
phase 1, on real vs reconstructed images, so that it already sees the decoder's blur when phase 3 starts;
the OT targets are one draw of `ot.n_codes` distinct samples (train_step sees batches, not the dataset).
If training ends before phase 2, fit_end solves the OT problem as AE-OT does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from otgan_lab.losses.adversarial import gan_critic_loss, gan_generator_loss
from otgan_lab.methods.aeot import AEOT
from otgan_lab.methods.base import Capabilities, with_penalties


class AEOTGAN(AEOT):
    required_nets = ("encoder", "decoder", "critic")
    declared_capabilities = Capabilities(critic=True, logit_critic=True, reconstructs=True, latent_ot=True,
                                         generator_net="decoder")
    optimizer_nets = {"autoencoder": ("encoder", "decoder"), "generator": ("decoder",), "critic": ("critic",)}

    def __init__(self, *, ae_steps: int = 2000, pair_weight: float = 10.0, r1_gamma: float = 0.0,
                 critic_warmup: bool = True, **kw):
        super().__init__(**kw)
        if self.n_codes is None:
            raise ValueError("aeot_gan solves its OT problem inside training: "
                             "set method.ot.n_codes to an integer")
        self.ae_steps, self.pair_weight = int(ae_steps), float(pair_weight)
        self.r1_gamma, self.critic_warmup = float(r1_gamma), bool(critic_warmup)

    def train_step(self, real, ctx):
        n = self.batch_size
        if ctx.step < self.ae_steps:
            x = real(n)
            loss, logs, reconstruction = self.autoencoder_loss(x)
            ctx.optimize("autoencoder", loss)
            if self.critic_warmup:
                logs.update(self._critic_step(x, reconstruction.detach(), ctx))
            return logs
        if not self.is_fitted:
            self._solve_from_batches(real)
        x = real(n)
        logs = self._critic_step(x, self.fake_batch(n), ctx)
        adversarial = gan_generator_loss(self.critic(self.generate(self._codes(n))))
        with torch.no_grad():
            paired_codes = self.encode(x)  # the frozen encoder: y_i = E(x_i), pairs of the OT targets
        pairing = F.mse_loss(self.generate(paired_codes).float(), x.float())
        ctx.optimize("generator", adversarial + self.pair_weight * pairing)
        logs.update(generator_loss=adversarial.detach(), pairing=pairing.detach())
        return logs

    def _critic_step(self, x: torch.Tensor, fake: torch.Tensor, ctx) -> dict[str, torch.Tensor]:
        logits_real, r1 = self.critic_with_r1(x, self.r1_gamma, ctx)
        loss = gan_critic_loss(logits_real, self.critic(fake))
        logs = {"critic_loss": loss.detach()}
        ctx.optimize("critic", with_penalties(loss, logs, r1=r1))
        return logs

    def _codes(self, n: int) -> torch.Tensor:
        # a few source points per code is enough in training (pyOMT's 4096-point rounds are for sampling)
        return self.extended_codes(n, n_source=4 * n)

    def fake_batch(self, n: int) -> torch.Tensor:
        with torch.no_grad():
            return self.generate(self._codes(n))

    @torch.no_grad()
    def _solve_from_batches(self, real) -> None:
        try:
            x = real(int(self.n_codes))  # one draw: distinct samples
        except ValueError as exc:
            raise ValueError(f"method.ot.n_codes={self.n_codes} is larger than the dataset; "
                             "lower it") from exc
        codes = self.encode_chunks(x[i:i + self.encode_batch] for i in range(0, len(x), self.encode_batch))
        stats = self.fit_ot(codes, progress=False)  # plain lines: the trainer's progress bar is live
        print("[aeot_gan] OT map ready: " + "  ".join(f"{k}={v:.4g}" for k, v in stats.items()), flush=True)

    def fit_end(self, data, ctx) -> dict[str, float]:
        return {} if self.is_fitted else super().fit_end(data, ctx)
