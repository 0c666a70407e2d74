"""The published tables of the reports we reproduce (shared REPORTS.md), as data for
`otlab table --report rN`.

Each report row holds the printed value, the metric it is in, and a selector naming the runs of ours that
reproduce it: method, sampler, dataset and dotted config keys. The report presets
(conf/experiment/report_rN.yaml) tag every run with `report_row` (set by conf/report_row/<row>.yaml), so
selectors match on that tag; a tuple of values means "any of these" (for example a DRS row may be measured
on the base run through eval.samplers, or on a run of its own when the sampler needs settings of its own).

Rows with `selector=None` are methods otgan_lab does not implement (LSGAN, BEGAN, GLANN, VAE...): they are
listed with their published value and never take part in the ordering check. `table` groups rows that are
ranked against each other (R5 holds several tables on different datasets). `expected_rank` (1 = best) states
a qualitative claim where the report printed no number (R2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

INF = math.inf  # the reports write "inf" for a run that failed


@dataclass(frozen=True)
class Selector:
    """Which of our runs stand for a report row; every given field must match."""

    method: str
    sampler: str = "standard"
    dataset: str | None = None
    # dotted config key -> value or tuple of values
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportRow:
    label: str
    published: float | None  # None: no number printed; inf: the authors' run failed
    selector: Selector | None
    table: str = ""
    published_std: float | None = None
    expected_rank: int | None = None
    note: str = ""


@dataclass(frozen=True)
class Report:
    key: str
    title: str
    metric: str  # our metric that stands beside the published one
    protocol: str  # how the published numbers were measured, as far as the report says
    rows: tuple[ReportRow, ...]


def _row(tag: str, method: str, sampler: str = "standard", dataset: str | None = None,
         **extra: Any) -> Selector:
    tags = tag if isinstance(tag, tuple) else (tag,)
    return Selector(method, sampler, dataset, {"report_row": tags, **extra})


_INCEPTION = "pytorch-fid (Inception pool3) FID on MNIST; sample count and reference split not stated"

R1 = Report(
    "r1", "R1: Unbalanced OT for MNIST generation (UOT, Psi* = softplus or exp, EMA)", "fid", _INCEPTION,
    (
        ReportRow("GAN baseline", 29.78, _row("r1_gan", "gan")),
        ReportRow("UOT baseline, 60 epochs", 35.6, _row("r1_uot_60ep", "uot")),
        ReportRow("UOT baseline, 100 epochs", 46.8, _row("r1_uot_100ep", "uot")),
        ReportRow("UOT, 100 epochs, Psi* = exp", 37.1, _row("r1_uot_exp_100ep", "uot")),
        ReportRow("UOT + Psi* = exp + EMA, 50 epochs", 143.0, _row("r1_uot_exp_ema_50ep", "uot"),
                  note="suspicious: a correct EMA should not make FID 4x worse"),
        ReportRow("UOT + Psi* = exp + EMA, 90 epochs", 136.0, _row("r1_uot_exp_ema_90ep", "uot")),
    ),
)

R2 = Report(
    "r2", "R2: OT-GAN on MNIST (no FID printed: qualitative claims as expected ranks)", "fid",
    "qualitative only (sample grids); the ranks restate the report's claims",
    (
        ReportRow("OT-GAN, batch 500", None, _row("r2_otgan_b500", "otgan"), table="batch size",
                  expected_rank=1),
        ReportRow("OT-GAN, batch 100", None, _row("r2_otgan_b100", "otgan"), table="batch size",
                  expected_rank=2, note="'larger batches give better images'"),
        ReportRow("OT-GAN, energy distance", None, _row("r2_otgan_b500", "otgan"), table="loss ablation",
                  expected_rank=1),
        ReportRow("Same nets, cross-entropy GAN loss", None, _row("r2_otgan_ce_b500", "otgan"),
                  table="loss ablation", expected_rank=2, note="'performs very poorly'"),
        ReportRow("OT-GAN on digit 8 only", None, _row("r2_otgan_digit8_b500", "otgan"), table="single digit",
                  note="'better images'; its FID is against digit-8 data, not comparable with the others"),
    ),
)

R3 = Report(
    "r3", "R3: WGAN, WGAN-GP, DRS and latent DOT on MNIST", "fid", _INCEPTION,
    (
        ReportRow("Vanilla GAN", 38.85, _row("r3_gan", "gan")),
        ReportRow("Vanilla GAN + latent DOT", 91.56, _row("r3_gan", "gan", "dot_latent")),
        ReportRow("WGAN-GP", None, _row(("r3_wgan_gp", "r3_wgan_gp_drs"), "wgan_gp"), table="DRS curves",
                  note="FID curves only"),
        ReportRow("WGAN-GP + DRS", None, _row(("r3_wgan_gp", "r3_wgan_gp_drs"), "wgan_gp", "drs"),
                  table="DRS curves", note="FID curves only"),
    ),
)

R4 = Report(
    "r4", "R4: improving an MNIST GAN without changing the generator", "fid", _INCEPTION,
    (
        ReportRow("Vanilla GAN (VGAN)", 38.0, _row("r4_gan", "gan")),
        ReportRow("VGAN + R1 regularization", 42.0, _row("r4_gan_r1", "gan")),
        ReportRow("WGAN (with batch norm)", 27.0, _row("r4_wgan_bn", "wgan_clip")),
        ReportRow("WGAN-GP, 150 epochs", 28.0, _row("r4_wgan_gp_150ep", "wgan_gp")),
        ReportRow("WGAN-GP, 150 + 30 epochs (second learning rate)", 16.0,
                  _row("r4_wgan_gp_180ep_lr2", "wgan_gp")),
        ReportRow("VGAN + DRS (~32,000 generator draws)", 22.0, _row("r4_gan", "gan", "drs")),
        ReportRow("WGAN-GP + DRS", 15.0, _row("r4_wgan_gp_150ep", "wgan_gp", "drs")),
        ReportRow("Unrolled GAN", INF, _row("r4_unrolled", "unrolled"), note="failed"),
        ReportRow("MD-GAN", INF, _row("r4_mdgan", "mdgan"), note="failed on MNIST; worked on 2-D mixtures"),
    ),
)


def _aeot_table(dataset: str, title: str,
                values: dict[str, tuple[float, float | None]]) -> tuple[ReportRow, ...]:
    """One dataset column of R5's AE-OT comparison (Lucic et al.'s FID table plus AE-OT)."""
    ours = {"NS GAN": ("gan", "nsgan", "standard"), "WGAN": ("wgan_clip", "wgan", "standard"),
            "AE (reconstruction)": ("aeot", "aeot", "reconstruction"), "AE-OT": ("aeot", "aeot", "standard")}
    rows = []
    for label, (value, std) in values.items():
        method, tag, sampler = ours.get(label, (None, None, None))
        selector = _row(f"r5_{tag}_{dataset}", method, sampler, dataset=dataset) if method else None
        rows.append(ReportRow(label, value, selector, table=title, published_std=std,
                              note="" if method else "not implemented in otgan_lab"))
    return tuple(rows)


def _aeotgan_table(dataset: str, column: str, values: dict[str, float]) -> tuple[ReportRow, ...]:
    """One column of R5's AE-OT-GAN table (FID; 'standard' DCGAN-like or 'ResNet' nets)."""
    name = {"cifar10": "CIFAR-10", "celeba": "CelebA"}[dataset]
    res = "_resnet" if column == "ResNet" else ""
    ours = {"WGAN-GP": ("wgan_gp", f"r5_wgan_gp{res}_{dataset}"),
            "AE-OT": ("aeot", f"r5_aeot{res}_{dataset}"),
            "AE-OT-GAN": ("aeot_gan", f"r5_aeot_gan{res}_{dataset}")}
    if dataset == "cifar10" and column == "ResNet":
        ours["SNGAN"] = ("gan", "r5_sngan_resnet_cifar10")
    rows = []
    for label, value in values.items():
        method, tag = ours.get(label, (None, None))
        rows.append(ReportRow(f"{label} ({name}, {column})", value,
                              _row(tag, method, dataset=dataset) if method else None,
                              table=f"AE-OT-GAN, {name} {column}",
                              note="" if method else "not implemented in otgan_lab"))
    return tuple(rows)


_R5_PROTOCOL = ("FID as printed in the papers the notes quote (Inception features; Lucic et al.'s protocol "
                "for the AE-OT table)")

R5 = Report(
    "r5", "R5: WGAN, WAE, AE-OT and AE-OT-GAN (lecture notes): MNIST and Fashion-MNIST", "fid", _R5_PROTOCOL,
    _aeot_table("mnist", "AE-OT comparison, MNIST", {
        "NS GAN": (6.8, 0.5), "LSGAN": (7.8, 0.6), "WGAN": (6.7, 0.4), "BEGAN": (13.1, 1.0),
        "VAE": (23.8, 0.6), "GLANN": (8.6, 0.1), "AE (reconstruction)": (5.5, None), "AE-OT": (6.2, 0.2)})
    + _aeot_table("fashion_mnist", "AE-OT comparison, Fashion-MNIST", {
        "NS GAN": (26.5, 1.6), "LSGAN": (30.7, 2.2), "WGAN": (21.5, 1.6), "BEGAN": (22.9, 0.9),
        "VAE": (58.7, 1.2), "GLANN": (13.0, 0.1), "AE (reconstruction)": (4.7, None), "AE-OT": (10.1, 0.3)}),
)

R5_RGB = Report(
    "r5_rgb", "R5 (lecture notes): the CIFAR-10 and CelebA tables (AE-OT comparison, AE-OT-GAN, WAE)", "fid",
    _R5_PROTOCOL,
    _aeot_table("cifar10", "AE-OT comparison, CIFAR-10", {
        "NS GAN": (58.5, 1.9), "LSGAN": (87.1, 47.5), "WGAN": (55.2, 2.3), "BEGAN": (71.4, 1.6),
        "VAE": (65.4, 0.2), "GLANN": (46.5, 0.2), "AE (reconstruction)": (28.2, None), "AE-OT": (38.3, 0.5)})
    + _aeot_table("celeba", "AE-OT comparison, CelebA", {
        "NS GAN": (55.0, 3.3), "LSGAN": (53.9, 2.8), "WGAN": (41.3, 2.0), "BEGAN": (38.9, 0.9),
        "VAE": (85.7, 3.8), "GLANN": (46.3, 0.1), "AE (reconstruction)": (67.5, None), "AE-OT": (68.4, 0.5)})
    + (
        ReportRow("VAE (CelebA)", 63.0, None, table="WAE, CelebA", note="not implemented in otgan_lab"),
        ReportRow("WAE-MMD (CelebA)", 55.0, _row("r5_wae_mmd_celeba", "wae_mmd", dataset="celeba"),
                  table="WAE, CelebA"),
        ReportRow("WAE-GAN (CelebA)", 42.0, _row("r5_wae_gan_celeba", "wae_gan", dataset="celeba"),
                  table="WAE, CelebA"),
    )
    + _aeotgan_table("cifar10", "standard", {"WGAN-GP": 40.2, "SNGAN": 25.5, "AE-OT": 34.2,
                                             "AE-OT-GAN": 25.2})
    + _aeotgan_table("cifar10", "ResNet", {"WGAN-GP": 19.6, "PGGAN": 18.8, "SNGAN": 21.7, "WGAN-div": 18.1,
                                           "AE-OT": 28.5, "AE-OT-GAN": 17.1})
    + _aeotgan_table("celeba", "standard", {"WGAN-GP": 21.2, "WGAN-div": 17.5, "AE-OT": 24.3,
                                            "AE-OT-GAN": 11.2})
    + _aeotgan_table("celeba", "ResNet", {"WGAN-GP": 18.4, "PGGAN": 16.3, "WGAN-div": 15.2, "WGAN-QC": 12.9,
                                          "AE-OT": 28.6, "AE-OT-GAN": 7.8}),
)

OTGAN_CIFAR10 = Report(
    "otgan_cifar10", "OT-GAN paper (Salimans et al. 2018): CIFAR-10 Inception Score", "is",
    "Inception Score of the 2015 TF Inception (1008 classes), 50,000 samples in 10 splits; ours: the same "
    "network from pytorch-fid's weights file (PyTorch resize, so within a few percent of the TF numbers)",
    (
        ReportRow("OT-GAN", 8.47, _row("otgan_cifar10", "otgan", dataset="cifar10"), published_std=0.12),
        ReportRow("OT-GAN, random matching", 4.64, None, note="ablation not implemented in otgan_lab"),
        ReportRow("OT-GAN, fixed pixel-space cosine cost", 4.93, None,
                  note="ablation not implemented in otgan_lab"),
    ),
)

REPORTS: dict[str, Report] = {r.key: r for r in (R1, R2, R3, R4, R5, R5_RGB, OTGAN_CIFAR10)}
