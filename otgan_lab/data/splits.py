"""Another split of a loaded dataset (the metrics' reference split, the floor's test split)."""

from __future__ import annotations

from otgan_lab.data.base import DeviceDataset


def load_split(data: DeviceDataset, split: str) -> DeviceDataset:
    """`data` itself when it is that split; else the same dataset's `split` on the same device, read by the
    loader that made `data` (`meta["load_split"]`; MNIST-like data: images.image_dataset)."""
    if split == data.meta.get("split", "train"):
        return data
    loader = data.meta.get("load_split")
    if loader is not None:
        return loader(split=split)
    from otgan_lab.data.images import image_dataset

    return image_dataset(data.name, root=data.meta.get("root"), split=split, classes=data.meta.get("classes"),
                         download=False, device=data.device)
