"""Pictures of samples: image grids for image data, scatter plots over the mixture for 2-D data.

Scatter plots draw the real data underneath (blue), the generated points over it (red) and the mixture's
modes as hollow circles, with the legend below the axes so that it never covers a mode; `captioned` puts a
title row (method, dataset, step, sampler) above an image grid.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

REAL_COLOUR, FAKE_COLOUR = "#1f77b4", "#d62728"


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
    grid = canvas.view(ncol, nrow, 3, h + pad, w + pad).permute(0, 3, 1, 4, 2)
    grid = grid.reshape(ncol * (h + pad), nrow * (w + pad), 3)
    return grid.numpy()


def run_title(method: str | None, dataset: str | None, step: int | None, sampler: str | None = None) -> str:
    """`wgan_gp on ring8, step 1500, sampler drs` (the parts that are known)."""
    head = " on ".join(p for p in (method, dataset) if p)
    parts = [head] if head else []
    if step is not None:
        parts.append(f"step {step}")
    if sampler:
        parts.append(f"sampler {sampler}")
    return ", ".join(parts)


def pyplot():
    """matplotlib.pyplot on the headless Agg backend (imported on first use: matplotlib is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    pyplot().close(fig)
    return rgb


def captioned(grid: np.ndarray, caption: str, min_width: int = 480) -> np.ndarray:
    """An image grid under a caption row, upscaled (nearest, whole factors) to at least `min_width` pixels
    so that the caption is readable beside small digits; pixels stay sharp."""
    plt = pyplot()
    scale = max(1, math.ceil(min_width / grid.shape[1]))
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    h, w = grid.shape[:2]
    dpi, caption_px = 100, 30
    fig = plt.figure(figsize=(w / dpi, (h + caption_px) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, h / (h + caption_px)))
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    text = fig.text(0.5, 1 - (caption_px / 2) / (h + caption_px), caption, ha="center", va="center",
                    fontsize=10)
    renderer = fig.canvas.get_renderer()
    while text.get_fontsize() > 6 and text.get_window_extent(renderer).width > 0.97 * w:
        text.set_fontsize(text.get_fontsize() - 0.5)  # a long caption shrinks rather than being cut
    return _rgb(fig)


def scatter_figure(fake: torch.Tensor, real: torch.Tensor | None = None, centres: torch.Tensor | None = None,
                   title: str = "", std: float | None = None):
    """The matplotlib figure behind `scatter_plot` (tests read its layout). Real points (blue) under the
    generated ones (red); each mode as a hollow circle, of radius 3 std when `std` is given (the region the
    2-D metrics count as the mode), so that it frames the data instead of covering it."""
    plt = pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    fig, ax = plt.subplots(figsize=(5, 5.6), dpi=100)
    handles = []
    if real is not None:
        r = real.detach().float().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=4, c=REAL_COLOUR, alpha=0.35, linewidths=0, zorder=1)
        handles.append(Line2D([], [], ls="", marker="o", ms=5, color=REAL_COLOUR, label="real"))
    f = fake.detach().float().cpu().numpy()
    ax.scatter(f[:, 0], f[:, 1], s=3, c=FAKE_COLOUR, alpha=0.5, linewidths=0, zorder=2)
    handles.append(Line2D([], [], ls="", marker="o", ms=5, color=FAKE_COLOUR, label="generated"))
    if centres is not None:
        c = centres.detach().float().cpu().numpy()
        if std:
            for x, y in c:
                ax.add_patch(Circle((x, y), 3 * std, fill=False, ec="black", lw=0.7, zorder=3))
        else:
            ax.scatter(c[:, 0], c[:, 1], s=60, marker="o", facecolors="none", edgecolors="black",
                       linewidths=0.7, zorder=3)
        handles.append(Line2D([], [], ls="", marker="o", ms=7, mfc="none", mec="black",
                              label="modes (3σ)" if std else "modes"))
        span = float(np.abs(c).max()) * 1.5 + 0.5
        ax.set_xlim(-span, span)
        ax.set_ylim(-span, span)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=10)
    # below the axes: inside, any corner may hold a mode (grid25's do)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, frameon=False,
              fontsize=8)
    fig.tight_layout()
    return fig


def scatter_plot(fake: torch.Tensor, real: torch.Tensor | None = None, centres: torch.Tensor | None = None,
                 title: str = "", std: float | None = None) -> np.ndarray:
    """Generated points over real points and mixture centres, as a uint8 RGB array."""
    return _rgb(scatter_figure(fake, real, centres, title, std))


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out a matplotlib figure, write it to `path` (its folder made as needed) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def save_png(image: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
