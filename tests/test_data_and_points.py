"""Device datasets and 2-D metrics against closed forms."""

from __future__ import annotations

import math

import numpy as np
import ot
import pytest
import torch

from otgan_lab.data import DatasetMissingError, grid25, image_dataset, ring8
from otgan_lab.metrics.points2d import exact_w2, mode_metrics
from tests.conftest import shared_data_root


def test_batches_walk_a_seeded_permutation():
    data = ring8(n_points=100, seed=3)
    seen = torch.cat([data.indices(25) for _ in range(4)])
    assert sorted(seen.tolist()) == list(range(100))  # one epoch = every sample once
    again = ring8(n_points=100, seed=3)
    assert torch.equal(torch.cat([again.indices(25) for _ in range(4)]), seen)
    state = data.state_dict()
    nxt = data.batch(10)
    data.load_state_dict(state)
    assert torch.equal(data.batch(10), nxt)


def test_mixture_geometry():
    data = ring8(n_points=20000, seed=0)
    centres = data.meta["centres"]
    assert torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0))
    assert len(torch.unique(centres.round(decimals=4), dim=0)) == 8  # no duplicated 0 = 2 pi mode
    assert len(grid25().meta["centres"]) == 25


def test_mode_metrics_on_exact_samples():
    data = grid25(n_points=25000, seed=1)
    m = mode_metrics(data.data, data.meta["centres"], data.meta["std"])
    assert m["modes_covered"] == 25
    # 2-D isotropic Gaussian: P(r <= 3 sigma) = 1 - exp(-9/2)
    assert m["hq_share"] == pytest.approx(1 - math.exp(-4.5), abs=0.003)
    assert m["mode_kl"] < 0.01
    assert m["hq_std"] == pytest.approx(0.05, rel=0.05)


def test_collapsed_samples():
    centres = ring8().meta["centres"]
    fake = centres[:2].repeat(50, 1)  # all mass on 2 modes, equally
    m = mode_metrics(fake, centres, 0.02)
    assert m["modes_covered"] == 2 and m["hq_share"] == 1.0
    assert m["mode_kl"] == pytest.approx(math.log(8 / 2))


def test_exact_w2_matches_closed_form_and_pot():
    torch.manual_seed(0)
    x = torch.randn(300, 2)
    shift = torch.tensor([0.3, -0.4])
    assert exact_w2(x, x + shift) == pytest.approx(0.5, abs=1e-6)  # a translation costs |shift|
    y = torch.randn(300, 2) * 2
    a = np.full(300, 1 / 300)
    ref = math.sqrt(ot.emd2(a, a, ot.dist(x.double().numpy(), y.double().numpy())))
    assert exact_w2(x, y) == pytest.approx(ref, rel=1e-9)


def test_missing_dataset_error_names_directory_and_files(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        image_dataset("mnist", root=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    assert "OTLAB_DATA" in msg


@pytest.mark.skipif(shared_data_root() is None, reason="OTLAB_DATA with MNIST not available")
def test_real_mnist_from_otlab_data():
    data = image_dataset("mnist", root=shared_data_root(), download=False)
    assert len(data) == 60000 and data.data.dtype == torch.uint8 and data.shape == (1, 28, 28)
    batch = data.batch(128)
    assert batch.min() >= -1 and batch.max() <= 1 and batch.max() == 1.0
    eights = image_dataset("mnist", root=shared_data_root(), download=False, classes=[8])
    assert (eights.labels == 8).all() and 5000 < len(eights) < 6500


@pytest.mark.skipif(shared_data_root() is None, reason="OTLAB_DATA with MNIST not available")
def test_stacked_mnist_modes_are_read_back_by_the_classifier():
    from otgan_lab.data import stacked_mnist
    from otgan_lab.metrics.images import stacked_modes

    data = stacked_mnist(root=shared_data_root(), n_samples=3000, download=False, seed=1)
    assert data.shape == (3, 28, 28) and int(data.labels.max()) < 1000
    m = stacked_modes(data.all(), data)
    # 3000 uniform draws over 1000 modes cover 1000 * (1 - exp(-3)) ~ 950 of them (+- a few % misreads)
    assert 900 <= m["modes_covered"] <= 1000
    collapsed = stacked_modes(data.all(0, 1).expand(500, -1, -1, -1), data)
    assert collapsed["modes_covered"] == 1
    assert collapsed["kl_to_uniform"] == pytest.approx(math.log(1000), rel=1e-6)
