#!/usr/bin/env python
"""Mutation check: do the tests catch a wrong experiment? (issue 13)

Each mutant is a small semantic bug of the kind that really happens (swapped arguments, a dropped call, an
off-by-one in a schedule, a wrong reduction or detach, a flipped sign) written as an EXACT snippet of a
file and its replacement. For each mutant the repository is copied to a temporary directory (the tracked
and untracked-but-not-ignored files, `git ls-files -co --exclude-standard`; or the tracked files of a
commit with `--rev`), the snippet is replaced in the copy, and a targeted subset of the tests runs against
the copy with this interpreter:

    python -m pytest -x -q -p no:cacheprovider <tests>     (cwd = the copy, PYTHONPATH = the copy first)

A mutant is KILLED when a test fails, SURVIVED when the tests pass, TIMEOUT when they exceed the per-mutant
limit, STALE when its snippet does not occur exactly once in the file (the code moved on: rewrite the
mutant), NOTEST when none of its test files exists yet. The repository itself is never modified: only the
temporary copy, which is restored from the pristine text after every mutant.

Before any mutant, a sanity run checks that the copy's `otgan_lab` is the one imported (the venv holds an
editable install of the original checkout), and a baseline run checks that the unmutated targeted tests
pass (else the check aborts: a failing baseline would count every mutant as killed).

    python scripts/mutation_check.py                  # all mutants, targeted tests, one at a time
    python scripts/mutation_check.py --list           # the catalogue
    python scripts/mutation_check.py --only gan_swap_real_fake,wgan_clip_never_clips
    python scripts/mutation_check.py --area samplers,data --all-tests --timeout 600
    python scripts/mutation_check.py --rev HEAD       # mutate the last commit, not the working tree

Exit status: 0 when every selected mutant is killed (or timed out), 1 when any survived, is stale or has no
test file, 2 when the sanity or baseline run failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    area: str
    path: str
    original: str
    replacement: str
    description: str
    tests: tuple[str, ...]


# Targeted test subsets. Method mutants point at the update tests written against the papers' formulas.
ADVERSARIAL = ("tests/test_updates_adversarial.py",)
OT_AE = ("tests/test_updates_ot_ae.py",)
SAMPLERS = ("tests/test_samplers.py", "tests/test_updates_infra.py")
DATA = ("tests/test_data_and_points.py", "tests/test_updates_infra.py")
TRAINER = ("tests/test_updates_infra.py", "tests/test_trainer.py", "tests/test_ema.py",
           "tests/test_schedule.py")
CHECKPOINT = ("tests/test_trainer.py", "tests/test_updates_infra.py")
LOSSES = ("tests/test_losses.py", "tests/test_losses_ot_methods.py")
METRICS = ("tests/test_metrics_images.py", "tests/test_data_and_points.py")
TABLE = ("tests/test_table.py",)
PRECISION = ("tests/test_precision_scope.py",)
BUDGET = ("tests/test_budget.py",)


def M(id: str, area: str, path: str, original: str, replacement: str, description: str,
      tests: tuple[str, ...]) -> Mutant:
    return Mutant(id, area, path, original, replacement, description, tuple(tests))


MUTANTS: list[Mutant] = [
    # ---------------------------------------------------------------------------------------- methods
    M("gan_swap_real_fake", "methods", "otgan_lab/methods/gan.py",
      "critic_loss = gan_critic_loss(logits_real, logits_fake)",
      "critic_loss = gan_critic_loss(logits_fake, logits_real)",
      "GAN critic step with the real and fake logits swapped", ADVERSARIAL),
    M("gan_generator_on_detached_fakes", "methods", "otgan_lab/methods/gan.py",
      "generated = generated if generated is not None else self.sample(n)",
      "generated = generated if generated is not None else self.fake_batch(n)",
      "GAN generator loss on detached fakes (no gradient reaches G)", ADVERSARIAL),
    M("gan_minimax_form_ignored", "methods", "otgan_lab/methods/gan.py",
      "generator_loss = gan_generator_loss(self.critic(generated), self.generator_loss)",
      "generator_loss = gan_generator_loss(self.critic(generated))",
      "GAN generator_loss=minimax silently trains the non-saturating form (argument dropped)", ADVERSARIAL),
    M("wgan_clip_never_clips", "methods", "otgan_lab/methods/wgan_clip.py",
      "            ctx.optimize(\"critic\", critic_loss)\n            self._clamp_critic()\n",
      "            ctx.optimize(\"critic\", critic_loss)\n",
      "WGAN weight clipping never applied (the clamp call dropped)", ADVERSARIAL),
    M("wgan_clip_one_sided", "methods", "otgan_lab/methods/wgan_clip.py",
      "        torch._foreach_clamp_max_(params, self.clip)\n", "",
      "WGAN clipping clamps only from below (clamp_max dropped)", ADVERSARIAL),
    M("wgan_clip_warmup_off_by_one", "methods", "otgan_lab/methods/wgan_clip.py",
      "gen_iteration < 25 or", "gen_iteration <= 25 or",
      "WGAN warm-up schedule gives 100 critic steps to 26 generator iterations, not 25",
      ADVERSARIAL + ("tests/test_losses.py",)),
    M("wgan_gp_one_critic_step", "methods", "otgan_lab/methods/wgan_gp.py",
      "for k in range(self.n_critic):", "for k in range(1):",
      "WGAN-GP does one critic step per generator step instead of n_critic", ADVERSARIAL),
    M("wgan_gp_penalty_at_real", "methods", "otgan_lab/methods/wgan_gp.py",
      "x_hat = interpolate(x, fake).requires_grad_(True)", "x_hat = x.clone().requires_grad_(True)",
      "WGAN-GP penalty at the real points instead of random interpolates", ADVERSARIAL),
    M("wgan_gp_weight_dropped", "methods", "otgan_lab/methods/wgan_gp.py",
      "wasserstein + self.gp_weight * gp", "wasserstein + gp",
      "WGAN-GP penalty added with weight 1 instead of lambda", ADVERSARIAL),
    M("uot_cost_detached_in_map_step", "methods", "otgan_lab/methods/uot.py",
      "generator_loss = uot_transport_loss(self.critic(fake), cost)",
      "generator_loss = uot_transport_loss(self.critic(fake), cost.detach())",
      "UOTM map step ignores the transport cost's gradient (wrong detach)", ADVERSARIAL),
    M("uot_source_slice", "methods", "otgan_lab/methods/uot.py",
      "return z[:, : self.source_dim].reshape(z.shape[0], *self.data_shape)",
      "return z[:, -self.source_dim:].reshape(z.shape[0], *self.data_shape)",
      "UOTM reads the source eps from the wrong end of the prior vector", ADVERSARIAL),
    M("otgan_schedule_off_by_one", "methods", "otgan_lab/methods/otgan.py",
      "return step % (self.n_gen + 1) == 0", "return step % self.n_gen == 0",
      "OT-GAN critic updates 1 in n_gen iterations instead of 1 in n_gen + 1", OT_AE),
    M("otgan_critic_descends", "methods", "otgan_lab/methods/otgan.py",
      'ctx.optimize("critic", -loss)', 'ctx.optimize("critic", loss)',
      "OT-GAN critic descends the energy distance instead of ascending it", OT_AE),
    M("otgan_repulsive_weight", "methods", "otgan_lab/ot/energy.py",
      "(0, 1, -2.0), (2, 3, -2.0)", "(0, 1, -1.0), (2, 3, -1.0)",
      "minibatch energy distance with -W(X,X') - W(Y,Y') instead of -2W(X,X') - 2W(Y,Y')",
      OT_AE + ("tests/test_sinkhorn.py",)),
    M("mdgan_swap_real_fake", "methods", "otgan_lab/methods/mdgan.py",
      "critic_loss = mdgan_discriminator_loss(loglik_real, loglik_fake, self.log_lambda, self.reg)",
      "critic_loss = mdgan_discriminator_loss(loglik_fake, loglik_real, self.log_lambda, self.reg)",
      "MD-GAN discriminator loss with real and fake swapped", OT_AE),
    M("mdgan_ns_flag_inverted", "methods", "otgan_lab/methods/mdgan.py",
      'non_saturating=self.generator_loss == "non_saturating"',
      'non_saturating=self.generator_loss != "non_saturating"',
      "MD-GAN generator loss form inverted (minimax <-> non-saturating)", OT_AE),
    M("unrolled_one_step_short", "methods", "otgan_lab/methods/unrolled.py",
      "for _ in range(steps):", "for _ in range(steps - 1):",
      "unrolled GAN unrolls K - 1 critic steps instead of K", OT_AE),
    M("unrolled_exact_first_order", "methods", "otgan_lab/methods/unrolled.py",
      "create_graph=exact)", "create_graph=False)",
      "exact unrolled GAN drops the second-order terms (no graph through the inner steps)", OT_AE),
    M("aeot_code_l1_mean", "methods", "otgan_lab/methods/aeot.py",
      "l1 = z.float().abs().sum(1).mean()", "l1 = z.float().abs().mean()",
      "AE-OT code L1 averaged over coordinates instead of summed per code (wrong reduction)", OT_AE),
    M("aeot_codes_not_denormalised", "methods", "otgan_lab/methods/aeot.py",
      "return denormalize_codes(codes, CodeStats(self.code_shift, self.code_scale))", "return codes",
      "AE-OT decodes the OT map's normalised codes without undoing the normalisation", OT_AE),
    M("aeot_gan_phase_off_by_one", "methods", "otgan_lab/methods/aeot_gan.py",
      "if ctx.step < self.ae_steps:", "if ctx.step <= self.ae_steps:",
      "AE-OT-GAN runs one autoencoder step too many before the GAN phase", OT_AE),
    M("aeot_gan_pair_weight_dropped", "methods", "otgan_lab/methods/aeot_gan.py",
      "adversarial + self.pair_weight * pairing", "adversarial + pairing",
      "AE-OT-GAN pairing loss added with weight 1", OT_AE),
    M("wae_mmd_weight_dropped", "methods", "otgan_lab/methods/wae.py",
      "cost + self.penalty_weight * mmd", "cost + mmd",
      "WAE-MMD penalty added with weight 1 instead of lambda", OT_AE),
    M("wae_gan_swap_prior_codes", "methods", "otgan_lab/methods/wae.py",
      "critic_loss = gan_critic_loss(latent_critic(self.prior(n)), latent_critic(codes))",
      "critic_loss = gan_critic_loss(latent_critic(codes), latent_critic(self.prior(n)))",
      "WAE-GAN latent critic with prior draws and codes swapped", OT_AE),
    M("wae_reconstruction_mean", "methods", "otgan_lab/methods/wae.py",
      "return self.rec_scale * error.pow(2).sum(1).mean(), z",
      "return self.rec_scale * error.pow(2).mean(), z",
      "WAE reconstruction cost averaged over pixels instead of summed (wrong reduction)", OT_AE),
    # ----------------------------------------------------------------------------------------- losses
    M("loss_ns_generator_minimax", "losses", "otgan_lab/losses/adversarial.py",
      '    if form == "non_saturating":\n        return F.softplus(-logits_fake).mean()',
      '    if form == "non_saturating":\n        return -F.softplus(logits_fake).mean()',
      "non-saturating generator loss computes the minimax form", LOSSES),
    M("loss_wasserstein_swapped", "losses", "otgan_lab/losses/adversarial.py",
      "return upcast(score_fake).mean() - upcast(score_real).mean()",
      "return upcast(score_real).mean() - upcast(score_fake).mean()",
      "WGAN critic loss E f(x) - E f(G(z)) (scores fakes higher)", LOSSES),
    M("loss_gp_squared_norm", "losses", "otgan_lab/losses/penalties.py",
      "return (per_sample_grad_norm(grad) - 1.0).pow(2).mean()",
      "return (grad.flatten(1).float().pow(2).sum(1) - 1.0).pow(2).mean()",
      "WGAN-GP penalty on the squared gradient norm", LOSSES),
    M("loss_gp_norm_over_batch", "losses", "otgan_lab/losses/penalties.py",
      "return (grad.flatten(1).float().pow(2).sum(1) + 1e-12).sqrt()",
      "return (grad.flatten(1).float().pow(2).sum() + 1e-12).sqrt()",
      "gradient norm taken over the whole batch, not per sample (wrong reduction)", LOSSES),
    M("loss_interpolate_one_eps", "losses", "otgan_lab/losses/penalties.py",
      "eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1),",
      "eps = torch.rand((1,) * real.dim(),",
      "one interpolation weight for the whole batch instead of one per sample", LOSSES),
    M("loss_r1_no_half", "losses", "otgan_lab/losses/penalties.py",
      "return 0.5 * gamma * grad.flatten(1).float().pow(2).sum(1).mean()",
      "return gamma * grad.flatten(1).float().pow(2).sum(1).mean()",
      "R1 = gamma E|g|^2 instead of (gamma/2) E|g|^2", LOSSES),
    M("loss_mdgan_logit_sign", "losses", "otgan_lab/losses/mdgan.py",
      "    return u - log1mexp(u)\n", "    return u + log1mexp(u)\n",
      "MD-GAN logit log(L/(lambda - L)) with the wrong sign on the log(1 - L/lambda) term", LOSSES),
    M("loss_mmd_cross_weight", "losses", "otgan_lab/losses/mmd.py",
      "return within - 2.0 * k_xy.mean()", "return within - k_xy.mean()",
      "MMD^2 with the cross term counted once instead of twice",
      ("tests/test_methods_aeot_wae.py::test_imq_mmd_matches_double_loop_and_separates_shifted_samples",)
      + OT_AE),
    # --------------------------------------------------------------------------------------- samplers
    M("drs_gamma_sign", "samplers", "otgan_lab/samplers/drs.py",
      "accept = uniforms(len(f), f.device, generator).log() < nnf.logsigmoid(f - gamma)",
      "accept = uniforms(len(f), f.device, generator).log() < nnf.logsigmoid(f + gamma)",
      "DRS shifts F by +gamma instead of -gamma", SAMPLERS),
    M("drs_percentile_complement", "samplers", "otgan_lab/samplers/drs.py",
      "torch.quantile(f, self.percentile / 100.0)", "torch.quantile(f, 1 - self.percentile / 100.0)",
      "DRS gamma at the (100 - p)th percentile of F", SAMPLERS),
    M("drs_burn_in_min", "samplers", "otgan_lab/samplers/drs.py",
      "max_logit = max(max_logit, float(self._batch_logits(method, logit_fn, m, generator)[1].max()))",
      "max_logit = max(max_logit, float(self._batch_logits(method, logit_fn, m, generator)[1].min()))",
      "DRS burn-in keeps the min logit (max vs min typo; the on-the-fly raise hides most of it)", SAMPLERS),
    M("drs_score_sign", "samplers", "otgan_lab/samplers/drs.py",
      "    return delta - log1mexp(delta - eps)\n", "    return delta + log1mexp(delta - eps)\n",
      "DRS F = Delta + log(1 - exp(Delta - eps)) (sign of the correction term)", SAMPLERS),
    M("mh_accept_inverted", "samplers", "otgan_lab/samplers/mh.py",
      "return log_u < (log_r_proposal - log_r_current)", "return log_u < (log_r_current - log_r_proposal)",
      "MH acceptance ratio r(x)/r(x') instead of r(x')/r(x)", SAMPLERS),
    M("mh_state_ratio_not_updated", "samplers", "otgan_lab/samplers/mh.py",
      "                log_r = torch.where(acc, log_r_new, log_r)\n", "",
      "MH chain moves but keeps comparing against its initial state's ratio (dropped update)", SAMPLERS),
    M("dot_squared_norm", "samplers", "otgan_lab/samplers/dot.py",
      "return flat_norm(x - y + delta) - score.reshape(len(x)) / k_eff",
      "return flat_norm(x - y + delta) ** 2 - score.reshape(len(x)) / k_eff",
      "DOT transport cost with the squared norm (not the W1 cost)", SAMPLERS),
    M("dot_critic_sign", "samplers", "otgan_lab/samplers/dot.py",
      "return flat_norm(x - y + delta) - score.reshape(len(x)) / k_eff",
      "return flat_norm(x - y + delta) + score.reshape(len(x)) / k_eff",
      "DOT moves samples toward lower critic values", SAMPLERS),
    M("dot_k_eff_no_abs", "samplers", "otgan_lab/samplers/dot.py",
      "gap = (scores[i] - scores[j]).abs()", "gap = scores[i] - scores[j]",
      "K_eff from signed critic differences (the abs dropped)", SAMPLERS),
    M("dot_latent_no_clip", "samplers", "otgan_lab/samplers/dot.py",
      "                z.clamp_(-1.0, 1.0)\n", "                pass\n",
      "latent DOT never clamps z to the uniform prior's box", SAMPLERS),
    M("standard_full_last_chunk", "samplers", "otgan_lab/samplers/base.py",
      "z = draw_latents(method, min(batch_size, n - start), generator)",
      "z = draw_latents(method, batch_size, generator)",
      "batched generation draws a full last chunk (returns more than n samples)", SAMPLERS),
    M("uniform_prior_not_centred", "samplers", "otgan_lab/samplers/base.py",
      "z = torch.rand(shape, generator=generator, device=generator.device, dtype=ref.dtype) * 2 - 1",
      "z = torch.rand(shape, generator=generator, device=generator.device, dtype=ref.dtype)",
      "a uniform prior redrawn on [0, 1] instead of [-1, 1]", SAMPLERS),
    # ------------------------------------------------------------------------------------------- data
    M("data_epoch_off_by_one", "data", "otgan_lab/data/base.py",
      "if self._perm is None or self._pos + n > len(self):",
      "if self._perm is None or self._pos + n >= len(self):",
      "an epoch's last full batch is dropped (new permutation one batch early)", DATA),
    M("data_image_scale_256", "data", "otgan_lab/data/base.py",
      "return raw.float().mul_(2.0 / 255.0).sub_(1.0)", "return raw.float().mul_(2.0 / 256.0).sub_(1.0)",
      "uint8 images scaled by 2/256: white maps to 0.992, not 1", DATA),
    M("data_resume_pos_dropped", "data", "otgan_lab/data/base.py",
      'self._pos = int(state["pos"])', "self._pos = 0",
      "a resumed data stream restarts its epoch (position not restored)", DATA),
    M("data_resume_generator_dropped", "data", "otgan_lab/data/base.py",
      '        self._generator.set_state(state["generator"])\n', "",
      "a resumed data stream keeps the current epoch but not the generator of later epochs", DATA),
    M("data_ring_duplicate_mode", "data", "otgan_lab/data/mixtures.py",
      "angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / n_modes)",
      "angles = torch.arange(n_modes, dtype=torch.float64) * (2 * math.pi / (n_modes - 1))",
      "ring8 angles over 2 pi/(n - 1): the notebook's duplicated 0 = 2 pi mode", DATA),
    # ---------------------------------------------------------------------------------------- trainer
    M("trainer_ema_before_step", "trainer", "otgan_lab/trainer.py",
      "                    with self.ctx.autocast():\n"
      "                        out = self.method.train_step(self.data.batch, self.ctx)\n"
      "                    self.step += 1\n"
      "                    if self.ema is not None:\n"
      "                        self.ema.update(self.method.ema_module, self.step)\n",
      "                    if self.ema is not None:\n"
      "                        self.ema.update(self.method.ema_module, self.step + 1)\n"
      "                    with self.ctx.autocast():\n"
      "                        out = self.method.train_step(self.data.batch, self.ctx)\n"
      "                    self.step += 1\n",
      "EMA updated before the generator step instead of after it", TRAINER),
    M("trainer_ema_step_off_by_one", "trainer", "otgan_lab/trainer.py",
      "self.ema.update(self.method.ema_module, self.step)",
      "self.ema.update(self.method.ema_module, self.step - 1)",
      "EMA decay rules read the step before the increment (warm-up / start_step off by one)", TRAINER),
    M("trainer_eval_not_forked", "trainer", "otgan_lab/trainer.py",
      "with torch.random.fork_rng(devices=devices):", "with torch.no_grad():",
      "evaluation draws from the training RNG stream (fork_rng dropped)", TRAINER),
    M("trainer_eval_leaves_eval_mode", "trainer", "otgan_lab/trainer.py",
      "            finally:\n                self.method.train()\n",
      "            finally:\n                pass\n",
      "after an evaluation the networks stay in eval mode (BatchNorm uses running stats in training)",
      TRAINER),
    M("trainer_schedule_early", "trainer", "otgan_lab/trainer.py",
      "self.schedule.apply(self.step)", "self.schedule.apply(self.step + 1)",
      "lr schedule applied one generator iteration early", TRAINER),
    M("trainer_ema_not_loaded", "trainer", "otgan_lab/trainer.py",
      '                self.ema.load_state_dict(state["ema"])\n', "                pass\n",
      "a resumed run restarts its EMA from the live weights", TRAINER),
    # ------------------------------------------------------------------------------------- checkpoint
    M("ckpt_torch_rng_not_restored", "checkpoint", "otgan_lab/checkpoint.py",
      '    torch.set_rng_state(state["torch"])\n', "",
      "resume does not restore the torch CPU RNG", CHECKPOINT),
    M("ckpt_python_rng_not_restored", "checkpoint", "otgan_lab/checkpoint.py",
      "    random.setstate((int(version), tuple(int(v) for v in internal.tolist()), gauss))\n", "",
      "resume does not restore python's random state", CHECKPOINT),
    M("ckpt_data_state_not_loaded", "checkpoint", "otgan_lab/trainer.py",
      '            self.data.load_state_dict(state["data"])\n', "",
      "resume does not restore the data order", CHECKPOINT),
    M("ckpt_prune_keeps_oldest", "checkpoint", "otgan_lab/checkpoint.py",
      "for old in list_checkpoints(ckpt_dir)[:-keep] if keep > 0 else []:",
      "for old in list_checkpoints(ckpt_dir)[keep:] if keep > 0 else []:",
      "pruning deletes the newest checkpoints instead of the oldest", CHECKPOINT),
    M("ckpt_optimizer_state_not_loaded", "checkpoint", "otgan_lab/trainer.py",
      '                opt.load_state_dict(state["optimizers"][name])\n', "                pass\n",
      "resume restarts the optimizers (Adam moments lost)", CHECKPOINT),
    M("ckpt_aeot_map_not_resized", "checkpoint", "otgan_lab/methods/aeot.py",
      "            if incoming is not None and incoming.shape != getattr(self, name).shape:\n",
      "            if False:\n",
      "a checkpoint holding AE-OT's solved OT map cannot be loaded into a fresh (empty-map) model",
      ("tests/test_updates_infra.py::test_every_other_method_resumes_bit_exactly",)),
    # ---------------------------------------------------------------------------------------- metrics
    M("fid_biased_covariance", "metrics", "otgan_lab/metrics/frechet.py",
      "    sigma /= n - 1\n", "    sigma /= n\n",
      "FID statistics with the biased (N) covariance", METRICS),
    M("fid_trace_factor", "metrics", "otgan_lab/metrics/frechet.py",
      "- 2.0 * trace_sqrt_product(sigma1, sigma2)", "- trace_sqrt_product(sigma1, sigma2)",
      "Frechet distance with tr(S1 S2)^1/2 counted once instead of twice", METRICS),
    M("kid_diagonal_kept", "metrics", "otgan_lab/metrics/kid.py",
      "term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))",
      "term_xx = k_xx.sum() / (m * (m - 1))",
      "KID keeps the i == j terms (biased MMD)", METRICS),
    M("prdc_knn_off_by_one", "metrics", "otgan_lab/metrics/prdc.py",
      "radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])",
      "radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k - 1])",
      "k-NN radius of the (k-1)th neighbour (the sample itself counted)", METRICS),
    M("points2d_hq_variance", "metrics", "otgan_lab/metrics/points2d.py",
      "hq = d_min <= n_sigma * std", "hq = d_min <= n_sigma * std ** 2",
      "high-quality threshold in variance units (n_sigma * std^2)", METRICS),
    M("points2d_hq_std_per_point", "metrics", "otgan_lab/metrics/points2d.py",
      "within_std = float(offsets.pow(2).sum(1).div(2).mean().sqrt())",
      "within_std = float(offsets.pow(2).sum(1).mean().sqrt())",
      "within-mode std as the 2-D radius RMS instead of the per-coordinate std (division by d dropped)",
      METRICS),
    # ------------------------------------------------------------------------------------------ table
    M("table_std_ddof0", "table", "otgan_lab/table/stats.py",
      "std = float(np.std(x, ddof=1))", "std = float(np.std(x, ddof=0))",
      "table std over seeds with ddof=0 instead of the sample std", TABLE),
    M("table_t_dof", "table", "otgan_lab/table/stats.py",
      "stats.t.ppf(0.5 + level / 2, n - 1)", "stats.t.ppf(0.5 + level / 2, n)",
      "t-interval with n degrees of freedom instead of n - 1", TABLE),
    M("table_swapped_pairs_sign", "table", "otgan_lab/table/reports.py",
      "np.sign(ours[i] - ours[j]) < 0]", "np.sign(ours[i] - ours[j]) > 0]",
      "ordering comparison lists the pairs ranked the same way as the swapped ones", TABLE),
    # ------------------------------ reuse_fake, fp32_modules, eps scaling, data-pass budgets, --samples
    M("gan_reuse_fresh_noise", "methods", "otgan_lab/methods/gan.py",
      "generated = self.sample(n) if self.reuse_fake else None",
      "generated = None",
      "GAN reuse_fake ignored: the generator step draws fresh noise", ADVERSARIAL),
    M("wgan_gp_reuse_first_batch", "methods", "otgan_lab/methods/wgan_gp.py",
      "if self.reuse_fake and k == self.n_critic - 1:", "if self.reuse_fake and k == 0:",
      "WGAN-GP reuse_fake reuses the first critic step's batch, not the last", ADVERSARIAL),
    M("otgan_eps_scaling_dropped", "methods", "otgan_lab/methods/otgan.py",
      '"eps_scaling": scaling}', '"eps_scaling": None}',
      "OT-GAN sinkhorn_eps_scaling never reaches the solver", OT_AE),
    M("keep_fp32_no_upcast", "trainer", "otgan_lab/amp.py",
      "        context.__enter__()\n", "",
      "fp32_modules: autocast left on inside a kept module", PRECISION),
    M("keep_fp32_leaks_on_error", "trainer", "otgan_lab/amp.py",
      "module.register_forward_hook(hooks.after, always_call=True)",
      "module.register_forward_hook(hooks.after)",
      "fp32_modules: an exception inside a kept module leaves autocast off", PRECISION),
    M("budget_ignores_critic_batches", "trainer", "otgan_lab/budget.py",
      "per_step = int(_root_.batch_size) * real_batches_per_step(_root_.method)",
      "per_step = int(_root_.batch_size)",
      "report epochs counted in generator iterations again (WGAN rows see 5x the data)", BUDGET),
    M("otgan_declares_one_batch", "methods", "otgan_lab/methods/otgan.py",
      "return 2  # X and X', every iteration", "return 1",
      "OT-GAN declares one real batch per iteration (it draws X and X')", BUDGET),
    M("uot_declares_one_batch", "methods", "otgan_lab/methods/uot.py",
      'return int(options.get("n_critic", 1))  # one real batch per critic step', "return 1",
      "UOT ignores n_critic in its batch count", BUDGET),
    M("sample_sheet_first_picture", "table", "otgan_lab/table/samples.py",
      "step, path = max(found)", "step, path = min(found)",
      "--samples shows a row's first picture instead of its last", TABLE),
    M("sample_sheet_ignores_sampler", "table", "otgan_lab/table/samples.py",
      'tag = "" if m.run_sampler in (None, m.sampler) else f"{m.sampler}_"', 'tag = ""',
      "--samples shows the training sampler's picture for a row of another sampler", TABLE),
    M("sample_sheet_name_prefix_ignored", "table", "otgan_lab/table/samples.py",
      "if (match := name.fullmatch(p.name))", "if (match := name.search(p.name))",
      "--samples takes another sampler's tagged picture (mh_step_N.png) for a row", TABLE),
]

STATUSES = ("KILLED", "SURVIVED", "TIMEOUT", "STALE", "NOTEST")


# ----------------------------------------------------------------------------------------------------------
# Copies


def source_files(rev: str | None) -> list[str]:
    if rev:
        out = subprocess.run(["git", "ls-tree", "-r", "-z", "--name-only", rev], cwd=REPO, check=True,
                             capture_output=True).stdout
    else:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                             capture_output=True).stdout
    return sorted({name for name in out.decode().split("\0") if name})


def make_copy(dest: Path, files: list[str], rev: str | None) -> None:
    """The repository's files (working tree, or `rev`'s tracked files) under `dest`."""
    dest.mkdir(parents=True)
    if rev:
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=REPO, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    for name in files:
        src = REPO / name
        if not src.exists() and not src.is_symlink():
            continue  # tracked but deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, target)


def child_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="offline",
               WANDB_SILENT="true")
    return env


def run_command(cmd: list[str], cwd: Path, timeout: float) -> tuple[int | None, str, float]:
    """(return code or None on timeout, combined output, seconds); on timeout the whole process group is
    killed (pytest may have started subprocesses of its own)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out, time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out, time.perf_counter() - t0


def sanity(copy: Path) -> None:
    """The copy's otgan_lab (and its conf tree) must be the one the tests import."""
    code = ("import otgan_lab, otgan_lab.paths as p; print(otgan_lab.__file__); print(p.conf_dir())")
    rc, out, _ = run_command([sys.executable, "-c", code], copy, 120)
    lines = out.strip().splitlines()
    real = copy.resolve()
    if rc != 0 or len(lines) < 2 or not all(Path(line).resolve().is_relative_to(real) for line in lines[-2:]):
        sys.exit(f"sanity check failed: the copy's otgan_lab is not the one imported from {copy}:\n{out}")


def pytest_cmd(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]


FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)


def first_failure(output: str) -> str:
    m = FAILED.search(output)
    if m:
        return m.group(1)
    m = re.search(r"^E +(.{0,100})", output, re.MULTILINE)
    return m.group(1).strip() if m else ""


# ----------------------------------------------------------------------------------------------------------
# Mutants


@dataclass
class Result:
    mutant: Mutant
    status: str
    detail: str
    seconds: float
    missing: tuple[str, ...] = ()


def stale_reason(mutant: Mutant, root: Path) -> str | None:
    path = root / mutant.path
    if not path.is_file():
        return f"{mutant.path} does not exist"
    count = path.read_text().count(mutant.original)
    return None if count == 1 else f"snippet occurs {count} times in {mutant.path}"


def tests_for(mutant: Mutant, root: Path, all_tests: bool,
              override: tuple[str, ...] = ()) -> tuple[list[str], tuple[str, ...]]:
    if all_tests:
        return ["tests"], ()
    wanted = override or mutant.tests
    present = [t for t in wanted if (root / t.split("::")[0]).exists()]  # a file or file::test
    return present, tuple(t for t in wanted if t not in present)


def run_mutant(mutant: Mutant, copy: Path, all_tests: bool, timeout: float,
               override: tuple[str, ...] = ()) -> Result:
    reason = stale_reason(mutant, copy)
    if reason:
        return Result(mutant, "STALE", reason, 0.0)
    tests, missing = tests_for(mutant, copy, all_tests, override)
    if not tests:
        return Result(mutant, "NOTEST", "missing: " + ", ".join(missing), 0.0, missing)
    path = copy / mutant.path
    pristine = path.read_text()
    path.write_text(pristine.replace(mutant.original, mutant.replacement, 1))
    try:
        rc, out, seconds = run_command(pytest_cmd(tests), copy, timeout)
    finally:
        path.write_text(pristine)
    if rc is None:
        return Result(mutant, "TIMEOUT", f"> {timeout:.0f} s", seconds, missing)
    if rc == 0:
        return Result(mutant, "SURVIVED", "", seconds, missing)
    if rc == 5:
        return Result(mutant, "NOTEST", "no tests collected", seconds, missing)
    return Result(mutant, "KILLED", first_failure(out) or f"pytest exit {rc}", seconds, missing)


def print_table(results: list[Result]) -> None:
    width = max(len(r.mutant.id) for r in results)
    print(f"\n{'id':<{width}}  {'status':<8}  {'s':>6}  description / first failing test")
    print("-" * (width + 80))
    for r in results:
        print(f"{r.mutant.id:<{width}}  {r.status:<8}  {r.seconds:6.1f}  {r.mutant.description}")
        if r.detail:
            print(f"{'':<{width}}  {'':<8}  {'':>6}  -> {r.detail}")
        if r.missing:
            print(f"{'':<{width}}  {'':<8}  {'':>6}  (missing test files: {', '.join(r.missing)})")


def select(args: argparse.Namespace) -> list[Mutant]:
    ids = {m.id for m in MUTANTS}
    if len(ids) != len(MUTANTS):
        sys.exit("duplicate mutant ids in the catalogue")
    chosen = MUTANTS
    if args.only:
        wanted = [s for s in args.only.split(",") if s]
        unknown = [s for s in wanted if s not in ids]
        if unknown:
            sys.exit(f"unknown mutant ids: {', '.join(unknown)} (see --list)")
        chosen = [m for m in chosen if m.id in wanted]
    if args.area:
        areas = set(args.area.split(","))
        chosen = [m for m in chosen if m.area in areas]
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated mutant ids")
    parser.add_argument("--area",
                        help="comma-separated areas: " + ", ".join(sorted({m.area for m in MUTANTS})))
    parser.add_argument("--list", action="store_true",
                        help="print the catalogue (and whether each is stale)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="mutants run in parallel, one copy each (default 1)")
    parser.add_argument("--all-tests", action="store_true", help="run the whole fast suite for every mutant")
    parser.add_argument("--tests",
                        help="comma-separated test files (or file::test) to run for every mutant "
                             "instead of each mutant's own list (e.g. to see what one file kills)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant (default 300)")
    parser.add_argument("--rev", help="mutate the tracked files of this commit instead of the working tree")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the unmutated tests first")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies")
    args = parser.parse_args(argv)

    mutants = select(args)
    override = tuple(t for t in (args.tests or "").split(",") if t)
    if args.list:
        for m in mutants:
            reason = stale_reason(m, REPO) if not args.rev else None
            flag = f"  [STALE in the working tree: {reason}]" if reason else ""
            print(f"{m.id:<34} {m.area:<10} {m.path}\n    {m.description}{flag}\n"
                  f"    tests: {' '.join(m.tests)}")
        print(f"\n{len(mutants)} mutants")
        return 0
    if not mutants:
        sys.exit("no mutant selected")

    files = source_files(args.rev)
    tmp = Path(tempfile.mkdtemp(prefix="otlab-mutants-"))
    jobs = max(1, min(args.jobs, len(mutants)))
    copies = [tmp / f"copy{j}" for j in range(jobs)]
    try:
        for c in copies:
            make_copy(c, files, args.rev)
        print(f"copied {'the tracked files of ' + args.rev if args.rev else str(len(files)) + ' files'} of "
              f"{REPO} to {tmp} ({jobs} cop{'y' if jobs == 1 else 'ies'})", flush=True)
        sanity(copies[0])

        live = [m for m in mutants if stale_reason(m, copies[0]) is None]
        if not args.skip_baseline and live:
            baseline: list[str] = []
            for m in live:
                for t in tests_for(m, copies[0], args.all_tests, override)[0]:
                    if t not in baseline:
                        baseline.append(t)
            files = set(baseline)  # a node id is redundant beside its whole file
            baseline = [t for t in baseline if "::" not in t or t.split("::")[0] not in files]
            if baseline:
                print(f"baseline: {' '.join(baseline)}", flush=True)
                rc, out, seconds = run_command(pytest_cmd(baseline), copies[0], args.timeout * 3)
                if rc != 0:
                    print(out[-6000:])
                    print(f"baseline FAILED (exit {rc}, {seconds:.0f} s): "
                          "the unmutated tests must pass; aborting")
                    return 2
                print(f"baseline passed in {seconds:.0f} s", flush=True)

        free: Queue[Path] = Queue()
        for c in copies:
            free.put(c)
        lock = threading.Lock()

        def work(m: Mutant) -> Result:
            copy = free.get()
            try:
                result = run_mutant(m, copy, args.all_tests, args.timeout, override)
            finally:
                free.put(copy)
            with lock:
                print(f"  {m.id}: {result.status} ({result.seconds:.0f} s) {result.detail}", flush=True)
            return result

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            results = list(pool.map(work, mutants))
    finally:
        if args.keep:
            print(f"copies kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print_table(results)
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    print(f"\nkilled {counts['KILLED']} / {len(results)}"
          + "".join(f", {s.lower()} {counts[s]}" for s in STATUSES[1:] if counts[s]))
    bad = counts["SURVIVED"] + counts["STALE"] + counts["NOTEST"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
