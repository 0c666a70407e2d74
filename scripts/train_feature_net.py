"""Train the LeNet feature/classifier network used by the MNIST metrics and save its weights.

LeCun et al., "Gradient-based learning applied to document recognition", Proc. IEEE 1998 (the network);
the classifier-feature FID follows the advice in METHODS.md §1 (Inception-FID on MNIST is less meaningful).

    python scripts/train_feature_net.py --dataset mnist --root $OTLAB_DATA \
        --out otgan_lab/assets/lenet_mnist.pt --seed 0

The training split is held as one uint8 tensor and batched by index (no per-sample Python transforms).
Augmentation is done on whole batches: for MNIST a random translation of up to ±2 pixels per image; for
Fashion-MNIST a random horizontal flip only (clothes are left-right symmetric, digits are not; and the
small net underfits Fashion-MNIST when it must also absorb shifts: 91.1% with them, see assets/README.md).
The saved file is a plain fp32 ``state_dict`` loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

from otgan_lab.nets.lenet import LeNet

DATASETS = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}
DEFAULT_EPOCHS = {"mnist": 8, "fashion_mnist": 12}
MAX_SHIFT = {"mnist": 2, "fashion_mnist": 0}  # pixels
FLIP = {"mnist": False, "fashion_mnist": True}


def load_split(dataset: str, root: str, train: bool) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 1, 28, 28) and int64 labels (N,), read from the torchvision raw files."""
    ds = DATASETS[dataset](root=root, train=train, download=False)
    return ds.data.unsqueeze(1).contiguous(), ds.targets.long()


def to_model_range(images_u8: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [-1, 1], the project-wide image convention."""
    return images_u8.float().div_(127.5).sub_(1.0)


def augment(x: Tensor, max_shift: int, flip: bool, gen: torch.Generator) -> Tensor:
    """Random per-image translation by up to ``max_shift`` pixels (background -1), optional horizontal flip.

    Vectorised over the batch with advanced indexing into a padded copy, so it costs one gather.
    """
    n, _, h, w = x.shape
    out = x
    if max_shift > 0:
        padded = F.pad(x, (max_shift,) * 4, value=-1.0)
        dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
        rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
        cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
        out = padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)
    if flip:
        mask = torch.rand(n, generator=gen) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(-1), out)
    return out


@torch.no_grad()
def accuracy(model: LeNet, images_u8: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(to_model_range(images_u8[start : start + batch_size]))
        correct += (logits.argmax(1) == labels[start : start + batch_size]).sum().item()
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    parser.add_argument("--root", default=os.environ.get("OTLAB_DATA"), help="folder holding MNIST/raw etc.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: 8 (mnist), 12 (fashion_mnist)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="1 is fastest on a shared 2-core CPU (2 threads stall each other)",
    )
    args = parser.parse_args()
    if args.root is None:
        parser.error("--root not given and OTLAB_DATA is not set")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # initial weights and dropout masks
    gen = torch.Generator().manual_seed(args.seed)  # batch order and augmentation
    epochs = args.epochs or DEFAULT_EPOCHS[args.dataset]
    max_shift, flip = MAX_SHIFT[args.dataset], FLIP[args.dataset]

    train_x, train_y = load_split(args.dataset, args.root, train=True)
    test_x, test_y = load_split(args.dataset, args.root, train=False)
    n = len(train_y)
    steps_per_epoch = n // args.batch_size  # drop the ragged last batch: BN prefers full batches

    model = LeNet()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=epochs * steps_per_epoch, pct_start=0.2
    )
    started = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        running = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size : (step + 1) * args.batch_size]
            x = augment(to_model_range(train_x[idx]), max_shift, flip, gen)
            loss = F.cross_entropy(model(x), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item()
        test_acc = accuracy(model, test_x, test_y)
        print(
            f"epoch {epoch + 1}/{epochs}  loss {running / steps_per_epoch:.4f}  test acc {test_acc:.4%}  "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )

    model.eval()
    test_acc = accuracy(model, test_x, test_y)
    state = {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"dataset {args.dataset}  test accuracy {test_acc:.4%}")
    print(f"saved {args.out}  ({args.out.stat().st_size / 1024:.0f} KB)  sha256 {digest}")


if __name__ == "__main__":
    main()
