"""Training throughput: otlab's trainer vs a plain reference loop in the most common PyTorch style.

Both sides train the same networks (model=mlp) with the same optimizers (algorithm and hyperparameters) and
batch size on MNIST. The reference reads data through torchvision's MNIST dataset with ToTensor/Normalize
transforms and a shuffling DataLoader and steps torch's default optimizer kernels; otlab keeps uint8 data on
the device, gathers batches by index, fuses critic passes and steps torch's fused optimizer kernels
(trainer.optimizer_impl=auto). Prints steps/s, images/s (real images consumed per second) and the ratios,
measured in this one run, at fp32 on both sides and with otlab under bf16 autocast.

    python scripts/bench_train.py --steps 200 --batch-size 64         # CPU, MNIST from $OTLAB_DATA
    python scripts/bench_train.py --device cuda --precision-compare   # + bf16 vs fp32, model=dcgan, batch 256
    python scripts/bench_train.py --methods gan --relative uot,mdgan,aeot,wae_mmd   # step cost vs gan
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from otgan_lab import build
from otgan_lab.amp import resolve_precision
from otgan_lab.loggers import Logger
from otgan_lab.losses.adversarial import (
    gan_critic_loss,
    gan_generator_loss,
    wasserstein_critic_loss,
    wasserstein_generator_loss,
)
from otgan_lab.losses.penalties import gradient_penalty, interpolate
from otgan_lab.paths import conf_dir
from otgan_lab.trainer import Trainer

CRITIC_STEPS = {"gan": 1, "wgan_clip": 5, "wgan_gp": 5}
# --relative: keep one-off OT solves small (AE-OT solves in fit_end after each timed loop, outside the timing;
# AE-OT-GAN solves inside the warm-up run, then times its GAN phase)
_SMALL_OT = ("method.ot.n_codes=512", "method.ot.solver.max_iter=50")
RELATIVE_EXTRA = {"aeot": _SMALL_OT, "aeot_gan": ("method.ae_steps=1", *_SMALL_OT)}


def compose(*overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir())):
        return hydra_compose("config", overrides=list(overrides))


def bench_otlab(method, args, model="mlp", precision="fp32", batch_size=None, extra=(),
                optimizer_impl="auto"):
    """Generator iterations per second of otlab's trainer (model=None: the method's own default nets).

    Timed by the trainer itself over its loop (TrainOutcome.steps_per_sec, which ends on a logging step's
    host sync), so a method's post-training solve (AE-OT's fit_end) is not counted.
    """
    overrides = [f"method={method}", "dataset=mnist", f"batch_size={batch_size or args.batch_size}",
                 f"device={args.device}", f"precision={precision}", "logger=none", *extra]
    cfg = compose(*overrides, *([f"model={model}"] if model else []))
    device = torch.device(args.device)
    build.seed_everything(0)
    data = build.build_dataset(cfg, 0, device)
    method_obj = build.build_method(cfg, device)
    with tempfile.TemporaryDirectory() as out:
        def run(steps):
            trainer = Trainer(method_obj, data, resolve_precision(precision, device), out, Logger(),
                              steps=steps, log_every=min(args.log_every, steps), checkpoint_every=0,
                              progress=False, optimizer_impl=optimizer_impl)
            return trainer.fit()

        run(args.warmup)
        return run(args.steps).steps_per_sec, cfg.model.name


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_reference(method, args):
    """The common style: Dataset + transforms + DataLoader, losses written inline, .item() for logging."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = compose(f"method={method}", "dataset=mnist", "model=mlp", f"batch_size={args.batch_size}")
    generator, critic = (instantiate(cfg.model.nets.generator).to(device),
                         instantiate(cfg.model.nets.critic).to(device))
    opt_cfg = cfg.method.optim
    opt_g = instantiate(opt_cfg.generator)(generator.parameters())
    opt_c = instantiate(opt_cfg.critic)(critic.parameters())
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    dataset = datasets.MNIST(os.environ.get("OTLAB_DATA", "data"), train=True, transform=tf, download=False)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda")
    batches = iter(loader)
    data_time = [0.0]  # seconds spent fetching and transforming batches (the data path's share)

    def real():
        nonlocal batches
        t = time.perf_counter()
        try:
            x, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            x, _ = next(batches)
        x = x.to(device, non_blocking=True)
        data_time[0] += time.perf_counter() - t
        return x

    def step(it):
        n = args.batch_size
        for _ in range(CRITIC_STEPS[method]):
            x = real()
            z = torch.randn(n, cfg.model.z_dim, device=device)
            with torch.no_grad():
                fake = generator(z)
            if method == "gan":
                loss_c = gan_critic_loss(critic(x), critic(fake))
            else:
                loss_c = wasserstein_critic_loss(critic(x), critic(fake))
                if method == "wgan_gp":
                    x_hat = interpolate(x, fake).requires_grad_(True)
                    g = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)[0]
                    loss_c = loss_c + 10.0 * gradient_penalty(g)
            opt_c.zero_grad()
            loss_c.backward()
            opt_c.step()
            if method == "wgan_clip":
                for p in critic.parameters():
                    p.data.clamp_(-0.01, 0.01)
        z = torch.randn(n, cfg.model.z_dim, device=device)
        out = critic(generator(z))
        loss_g = gan_generator_loss(out) if method == "gan" else wasserstein_generator_loss(out)
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        if it % args.log_every == 0:
            _ = (loss_c.item(), loss_g.item())

    for i in range(args.warmup):
        step(i)
    sync(device)
    data_time[0] = 0.0
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    sync(device)
    elapsed = time.perf_counter() - t0
    return args.steps / elapsed, data_time[0] / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="gan,wgan_clip,wgan_gp")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--workers", type=int, default=0, help="reference DataLoader workers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats; the best of each is shown")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the otlab bf16 column")
    parser.add_argument("--precision-compare", action="store_true",
                        help="bf16 vs fp32 steps/s, model=dcgan, batch 256")
    parser.add_argument("--relative", default="",
                        help="also time these methods (otlab only, their own default nets, same batch) "
                             "relative to gan with model=mlp, e.g. uot,mdgan,aeot,wae_mmd")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"batch={args.batch_size} steps={args.steps} (+{args.warmup} warm-up), model=mlp, MNIST, "
          f"best of {args.repeats} interleaved repeats")
    print("ref data share: the reference loop's time in its DataLoader (fetch + transforms + copy); "
          "a free data\n"
          "path alone would give at most 1 / (1 - share) over the reference. 'loop optim': "
          "otlab with torch's\n"
          "single-tensor optimizers (trainer.optimizer_impl=for_loop, the reference's kernels), "
          "i.e. the data\n"
          "path's and the loop's share of the gain; fp32: otlab's defaults; bf16: precision=bf16 (autocast).")
    print(f"{'method':<10} {'ref it/s':>9} {'ref img/s':>10} {'loop optim':>11} "
          f"{'fp32 it/s':>10} {'fp32 img/s':>11} {'ratio':>6} "
          f"{'bf16 it/s':>10} {'bf16 img/s':>11} {'ratio':>6} {'ref data share':>15}")
    for method in args.methods.split(","):
        runs = {"ref": [], "loop": [], "fp32": [], "bf16": []}
        for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits every variant alike
            ref, share = bench_reference(method, args)
            runs["ref"].append(ref)
            runs["loop"].append(bench_otlab(method, args, optimizer_impl="for_loop")[0])
            runs["fp32"].append(bench_otlab(method, args)[0])
            runs["bf16"].append(bench_otlab(method, args, precision="bf16")[0] if args.bf16 else float("nan"))
        ref, loop, fp32, bf16 = (max(runs[k]) for k in ("ref", "loop", "fp32", "bf16"))
        imgs = CRITIC_STEPS[method] * args.batch_size
        print(f"{method:<10} {ref:>9.1f} {ref * imgs:>10.0f} {loop / ref:>10.2f}x "
              f"{fp32:>10.1f} {fp32 * imgs:>11.0f} {fp32 / ref:>5.2f}x "
              f"{bf16:>10.1f} {bf16 * imgs:>11.0f} {bf16 / ref:>5.2f}x {share:>14.0%}")
    if args.relative:
        print("\ncost per generator iteration relative to gan (model=mlp), same data and batch (otlab):")
        base, _ = bench_otlab("gan", args)
        for method in args.relative.split(","):
            rate, nets = bench_otlab(method, args, model=None, extra=RELATIVE_EXTRA.get(method, ()))
            print(f"{method:<10} {rate:8.2f} it/s  model={nets:<12} "
                  f"x{base / rate:5.2f} of gan's time per iteration")
    if args.precision_compare:
        print("\nbf16 vs fp32, model=dcgan, batch 256 (otlab):")
        for method in args.methods.split(","):
            fp32, _ = bench_otlab(method, args, model="dcgan", precision="fp32", batch_size=256)
            bf16, _ = bench_otlab(method, args, model="dcgan", precision="bf16", batch_size=256)
            print(f"{method:<10} fp32 {fp32:8.1f} it/s   bf16 {bf16:8.1f} it/s   ratio {bf16 / fp32:5.2f}x")


if __name__ == "__main__":
    main()
