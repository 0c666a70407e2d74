"""Pictures of samples: image grids for image data, scatter plots over the mixture for 2-D data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(n, C, H, W) in [-1, 1] -> uint8 (H', W', 3) grid, vectorised (no per-image Python loop)."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    n, c, h, w = x.shape
    if c == 1:
        x = x.expand(n, 3, h, w)
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    canvas = torch.zeros(ncol * nrow, 3, h + pad, w + pad, dtype=torch.uint8)
    canvas[:n, :, :h, :w] = x[:, :3]
    grid = canvas.view(ncol, nrow, 3, h + pad, w + pad).permute(0, 3, 1, 4, 2).reshape(ncol * (h + pad), nrow * (w + pad), 3)
    return grid.numpy()


def scatter_plot(fake: torch.Tensor, real: torch.Tensor | None = None, centres: torch.Tensor | None = None,
                 title: str = "") -> np.ndarray:
    """Generated points over real points and mixture centres, as a uint8 RGB array."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if real is not None:
        r = real.detach().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="#999999", alpha=0.3, label="real")
    f = fake.detach().float().cpu().numpy()
    ax.scatter(f[:, 0], f[:, 1], s=2, c="#d62728", alpha=0.5, label="generated")
    if centres is not None:
        c = centres.cpu().numpy()
        ax.scatter(c[:, 0], c[:, 1], s=40, marker="x", c="black", label="modes")
        span = float(np.abs(c).max()) * 1.5 + 0.5
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", markerscale=4, fontsize=7)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


def save_png(image: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
