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
    python scripts/bench_train.py --nets peer --methods gan,wgan_gp   # vs the PyTorch-GAN scripts, per lever

--nets peer: the reference is the loop of the most widely used PyTorch GAN scripts (PyTorch-GAN's gan.py and
wgan_gp.py) at their own networks (model=mlp_bn here), written the way they are: a torchvision dataset with
Resize/ToTensor/Normalize and a shuffling DataLoader, Adam with torch's default kernels, .item() on the losses
every batch. gan: one generated batch serves the generator step and then, detached, the discriminator step
(sigmoid + BCELoss). wgan_gp: every batch is a critic step on a fresh G(z) built with autograd on (so the
critic loss also backpropagates into the generator, as the script does), and every 5th batch a generator step
on a second forward of the same z. otlab is timed at its defaults and with each lever alone: reuse_fake (one
generator forward per iteration), compile (torch.compile of the networks), bf16 autocast.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time

import torch
from hydra.utils import instantiate
from torch import nn
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
                optimizer_impl="auto", compile_nets=False, channels_last=False):
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
    if channels_last:  # NHWC weights: oneDNN's preferred conv layout; the outputs follow the weights' format
        method_obj.to(memory_format=torch.channels_last)
    if compile_nets:
        compile_networks(method_obj, compile_nets)
    with tempfile.TemporaryDirectory() as out:
        def run(steps):
            trainer = Trainer(method_obj, data, resolve_precision(precision, device), out, Logger(),
                              steps=steps, log_every=min(args.log_every, steps), checkpoint_every=0,
                              progress=False, optimizer_impl=optimizer_impl)
            with contextlib.redirect_stdout(io.StringIO()):  # its log lines would bury the table
                return trainer.fit()

        run(args.warmup)
        return run(args.steps).steps_per_sec, cfg.model.name


def compile_networks(method_obj, mode=None):
    """torch.compile each network in place (nn.Module.compile: state_dict keys unchanged). A critic whose
    input gradient is differentiated again (WGAN-GP's penalty) stays eager: compiled graphs have no double
    backward."""
    for name, net in method_obj.nets.items():
        if name == "critic" and type(method_obj).__name__ == "WGANGP":
            continue
        net.compile(**({"mode": mode} if isinstance(mode, str) else {}))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class TimedBatches:
    """real(): the DataLoader's next image batch on the device, endlessly; `seconds` is the time spent in
    the loader (fetch, per-sample transforms, collation, copy), the reference's data-path share."""

    def __init__(self, loader, device):
        self.loader, self.device, self.batches, self.seconds = loader, device, iter(loader), 0.0

    def __call__(self):
        t = time.perf_counter()
        try:
            x, _ = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            x, _ = next(self.batches)
        x = x.to(self.device, non_blocking=True)
        self.seconds += time.perf_counter() - t
        return x


def time_loop(step, real, args, device):
    """A reference loop's iterations per second after its warm-up, and the share of that time in its data
    loader."""
    for i in range(args.warmup):
        step(i)
    sync(device)
    real.seconds = 0.0
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i)
    sync(device)
    elapsed = time.perf_counter() - t0
    return args.steps / elapsed, real.seconds / elapsed


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
    real = TimedBatches(loader, device)

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

    return time_loop(step, real, args, device)


class PeerGenerator(nn.Module):
    """The PyTorch-GAN scripts' generator: blocks Linear [+ BatchNorm1d(out, 0.8)] + LeakyReLU(0.2)."""

    def __init__(self, z_dim=100, shape=(1, 28, 28)):
        super().__init__()

        def block(fan_in, fan_out, normalize=True):
            layers = [nn.Linear(fan_in, fan_out)]
            if normalize:
                layers.append(nn.BatchNorm1d(fan_out, 0.8))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.shape = shape
        self.model = nn.Sequential(*block(z_dim, 128, normalize=False), *block(128, 256), *block(256, 512),
                                   *block(512, 1024), nn.Linear(1024, 784), nn.Tanh())

    def forward(self, z):
        return self.model(z).view(z.size(0), *self.shape)


def peer_critic(sigmoid):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.LeakyReLU(0.2, inplace=True),
                         nn.Linear(512, 256), nn.LeakyReLU(0.2, inplace=True), nn.Linear(256, 1),
                         *([nn.Sigmoid()] if sigmoid else []))


def bench_peer(method, args):
    """The PyTorch-GAN scripts' loops (gan.py, wgan_gp.py) at their networks; generator iterations per
    second (wgan_gp: one per 5 batches) and the DataLoader's share of the time."""
    device, n, z_dim = torch.device(args.device), args.batch_size, 100
    torch.manual_seed(0)
    generator, critic = PeerGenerator().to(device), peer_critic(sigmoid=method == "gan").to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(critic.parameters(), lr=2e-4, betas=(0.5, 0.999))
    tf = transforms.Compose([transforms.Resize(28), transforms.ToTensor(),
                             transforms.Normalize([0.5], [0.5])])
    dataset = datasets.MNIST(os.environ.get("OTLAB_DATA", "data"), train=True, transform=tf, download=False)
    loader = DataLoader(dataset, batch_size=n, shuffle=True, drop_last=True, num_workers=args.workers)
    bce = nn.BCELoss()
    real = TimedBatches(loader, device)

    def gan_iteration():
        imgs = real()
        valid, fake = torch.ones(n, 1, device=device), torch.zeros(n, 1, device=device)
        opt_g.zero_grad()
        gen_imgs = generator(torch.randn(n, z_dim, device=device))
        g_loss = bce(critic(gen_imgs), valid)
        g_loss.backward()
        opt_g.step()
        opt_d.zero_grad()
        d_loss = (bce(critic(imgs), valid) + bce(critic(gen_imgs.detach()), fake)) / 2
        d_loss.backward()
        opt_d.step()
        _ = (d_loss.item(), g_loss.item())

    def gradient_penalty_of(real_imgs, fake_imgs):
        alpha = torch.rand(real_imgs.size(0), 1, 1, 1, device=device)
        interpolates = (alpha * real_imgs + (1 - alpha) * fake_imgs).requires_grad_(True)
        out = critic(interpolates)
        grads = torch.autograd.grad(out, interpolates, grad_outputs=torch.ones_like(out), create_graph=True,
                                    retain_graph=True, only_inputs=True)[0].view(real_imgs.size(0), -1)
        return ((grads.norm(2, dim=1) - 1) ** 2).mean()

    def wgan_gp_iteration():
        for i in range(5):
            imgs = real()
            opt_d.zero_grad()
            z = torch.randn(n, z_dim, device=device)
            fake_imgs = generator(z)
            gp = gradient_penalty_of(imgs.data, fake_imgs.data)
            d_loss = -critic(imgs).mean() + critic(fake_imgs).mean() + 10 * gp
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad()
            if i == 0:
                g_loss = -critic(generator(z)).mean()
                g_loss.backward()
                opt_g.step()
            _ = (d_loss.item(), g_loss.item())

    iteration = gan_iteration if method == "gan" else wgan_gp_iteration
    return time_loop(lambda i: iteration(), real, args, device)


PEER_LEVERS = {  # label -> bench_otlab keywords, each lever alone on top of otlab's defaults (model=mlp_bn)
    "fp32": {},
    "reuse_fake": {"extra": ("method.reuse_fake=true",)},
    "compile": {"compile_nets": True},
    "bf16": {"precision": "bf16"},
    "all": {"extra": ("method.reuse_fake=true",), "compile_nets": True, "precision": "bf16"},
}


CONV_LEVERS = {  # model=dcgan: each lever alone against eager fp32 (same batch)
    "fp32": {},
    "channels_last": {"channels_last": True},
    "compile": {"compile_nets": True},
    "bf16": {"precision": "bf16"},
}


def main_conv(args):
    print(f"\nconv nets (model=dcgan, batch {args.batch_size}), otlab it/s per lever, ratio to eager fp32, "
          f"best of {args.repeats}:")
    for method in args.methods.split(","):
        runs = {k: [] for k in CONV_LEVERS}
        for _ in range(args.repeats):
            for k, kw in CONV_LEVERS.items():
                runs[k].append(bench_otlab(method, args, model="dcgan", **kw)[0])
        best = {k: max(v) for k, v in runs.items()}
        print(f"{method:<8} " + "   ".join(f"{k} {best[k]:6.2f} ({best[k] / best['fp32']:4.2f}x)"
                                          for k in CONV_LEVERS))


def main_peer(args):
    levers = [k for k in PEER_LEVERS if k in args.levers.split(",")]
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} "
          f"batch={args.batch_size} steps={args.steps} (+{args.warmup} warm-up), MNIST, best of "
          f"{args.repeats} interleaved repeats")
    print("ref: the PyTorch-GAN scripts' loop at their networks; otlab at model=mlp_bn (the same networks);\n"
          "each column is otlab's images/s over the reference's, one lever at a time on otlab's defaults\n"
          "(fp32 = the defaults; all = every lever together).")
    print(f"{'method':<8} {'ref it/s':>9} {'ref img/s':>10} {'ref data':>9} "
          + " ".join(f"{k:>11}" for k in levers))
    for method in args.methods.split(","):
        runs = {k: [] for k in ["ref", *levers]}
        shares = []
        for _ in range(args.repeats):
            ref, share = bench_peer(method, args)
            runs["ref"].append(ref)
            shares.append(share)
            for k in levers:
                runs[k].append(bench_otlab(method, args, model="mlp_bn", **PEER_LEVERS[k])[0])
        best = {k: max(v) for k, v in runs.items()}
        imgs = CRITIC_STEPS[method] * args.batch_size
        print(f"{method:<8} {best['ref']:>9.1f} {best['ref'] * imgs:>10.0f} {min(shares):>9.0%} "
              + " ".join(f"{best[k] / best['ref']:>10.2f}x" for k in levers))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="gan,wgan_clip,wgan_gp")
    parser.add_argument("--nets", choices=("mlp", "peer"), default="mlp",
                        help="mlp: model=mlp vs a plain loop; peer: the PyTorch-GAN scripts at their nets")
    parser.add_argument("--conv", action="store_true",
                        help="also time the conv-net levers (channels-last, compile, bf16) at model=dcgan")
    parser.add_argument("--levers", default=",".join(PEER_LEVERS),
                        help=f"--nets peer: otlab variants to time ({', '.join(PEER_LEVERS)})")
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
    if args.nets == "peer":
        unknown = sorted(set(args.methods.split(",")) - {"gan", "wgan_gp"})
        if unknown:
            parser.error(f"--nets peer has reference loops for gan and wgan_gp only, not {unknown}")
        main_peer(args)
        if args.conv:
            main_conv(args)
        return None
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
        # fp16 needs a CUDA device (a CPU run is refused); compile: nn.Module.compile of the networks, with
        # CUDA graphs (mode="reduce-overhead") on a GPU
        precisions = ["fp32", "bf16", *(["fp16"] if args.device.startswith("cuda") else [])]
        mode = "reduce-overhead" if args.device.startswith("cuda") else None
        print(f"\nprecision x torch.compile (mode={mode}), model=dcgan, batch 256 (otlab), it/s and ratio to "
              "eager fp32:")
        for method in args.methods.split(","):
            base = None
            cells = []
            for precision in precisions:
                for compiled in (False, True):
                    rate, _ = bench_otlab(method, args, model="dcgan", precision=precision, batch_size=256,
                                          compile_nets=(mode or True) if compiled else False)
                    base = base or rate
                    label = f"{precision}{'+compile' if compiled else ''}"
                    cells.append(f"{label} {rate:7.1f} ({rate / base:4.2f}x)")
            print(f"{method:<10} " + "   ".join(cells))


if __name__ == "__main__":
    main()
