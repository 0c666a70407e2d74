"""Datasets held on the device and batched by index (no DataLoader, no per-sample transforms)."""

from otgan_lab.data.base import DeviceDataset
from otgan_lab.data.images import DatasetMissingError, image_dataset, stacked_mnist
from otgan_lab.data.mixtures import GaussianMixture2D, grid25, ring8

__all__ = ["DatasetMissingError", "DeviceDataset", "GaussianMixture2D", "grid25", "image_dataset", "ring8",
           "stacked_mnist"]
