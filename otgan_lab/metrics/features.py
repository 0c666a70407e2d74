"""Feature backbones for the image metrics (FID, KID, precision/recall), behind one interface.

- ``inception``: Inception-v3 pool3 features (2048-d) exactly as pytorch-fid computes them
  (Szegedy et al., "Rethinking the Inception architecture", CVPR 2016; Heusel et al., "GANs trained by a
  two time-scale update rule converge to a local Nash equilibrium", NeurIPS 2017, which defines FID;
  Seitzer, pytorch-fid, 2020, the PyTorch port of the TF FID network whose weights we load).
- ``lenet_mnist`` / ``lenet_fashion``: penultimate (128-d) activations of the small LeNet classifier
  shipped in ``otgan_lab/assets`` (LeCun et al. 1998). On MNIST-like data a classifier-feature FID is more
  meaningful than Inception-FID (METHODS.md §1); the two are **not comparable**, so every extractor carries
  ``name``, ``weights_hash`` and ``preprocessing`` for cache keys and result records.

Images follow the project convention: float tensors in [-1, 1], shape (N, C, H, W). uint8 tensors are also
accepted and read as pixel values in [0, 255] (convenient for reference datasets held as uint8).
Extraction always runs in fp32 with autocast disabled, in eval mode, without gradients, streaming over
batches of ``batch_size`` images, so the result does not depend on the caller's AMP setting or batch size.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otgan_lab.errors import OtlabError
from otgan_lab.nets.lenet import LeNet

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
FID_WEIGHTS_ENV = "OTLAB_INCEPTION_WEIGHTS"  # optional override of the weights file location
HASH_PREFIX_LEN = 8  # same length as torch.hub's file-name hash convention

LENET_ASSETS = {"mnist": "lenet_mnist.pt", "fashion_mnist": "lenet_fashion_mnist.pt"}


class InceptionWeightsMissing(OtlabError, FileNotFoundError):
    """pytorch-fid's Inception weights file is not on disk (and this project never downloads it)."""


class FeatureExtractor:
    """A frozen network mapping images to feature vectors, with the metadata that identifies it.

    ``__call__(images)`` returns float32 features of shape (N, dim) on the extractor's device.
    ``images`` is one tensor (N, C, H, W) or an iterable of such batches (e.g. produced by a sampler);
    either way work is done ``batch_size`` images at a time.
    """

    def __init__(
        self,
        name: str,
        network: nn.Module,
        dim: int,
        weights_hash: str,
        preprocessing: str,
        prepare: Callable[[Tensor], Tensor],
        batch_size: int = 256,
        device: str | torch.device = "cpu",
    ) -> None:
        self.name = name
        self.dim = dim
        self.weights_hash = weights_hash
        self.preprocessing = preprocessing
        self.batch_size = batch_size
        self._prepare = prepare
        self.device = torch.device(device)
        self.network = network.to(self.device).float().eval().requires_grad_(False)

    @property
    def cache_key(self) -> str:
        """Identifies the features: reference statistics are reusable only when this string matches."""
        return f"{self.name}|{self.weights_hash}|{self.preprocessing}"

    def to(self, device: str | torch.device) -> FeatureExtractor:
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def _batches(self, images: Tensor | Iterable[Tensor]) -> Iterator[Tensor]:
        chunks = [images] if isinstance(images, Tensor) else images
        for chunk in chunks:
            for start in range(0, chunk.shape[0], self.batch_size):
                yield chunk[start : start + self.batch_size]

    @torch.no_grad()
    def __call__(self, images: Tensor | Iterable[Tensor]) -> Tensor:
        self.network.eval()  # in case someone toggled train mode: BN/dropout must be frozen
        outputs = []
        # Metric features are defined in fp32: an enclosing bf16/fp16 autocast region must not leak in.
        with torch.autocast(device_type=self.device.type, enabled=False):
            for batch in self._batches(images):
                x = self._prepare(batch.to(self.device, non_blocking=True))
                outputs.append(self.network(x).float())
        if not outputs:
            return torch.empty(0, self.dim, device=self.device)
        return torch.cat(outputs)

    def __repr__(self) -> str:
        return f"FeatureExtractor({self.cache_key!r}, dim={self.dim}, device={self.device})"


# ---------------------------------------------------------------------------------------------- helpers
def _to_unit_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] or float [-1, 1] -> float32 [-1, 1]."""
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images.float()


def _quantize_like_png(images: Tensor) -> Tensor:
    """Map images to the uint8 levels a PNG would hold, returned as float32 in [0, 1].

    float [-1, 1] -> ``x * 0.5 + 0.5`` in [0, 1] -> ``* 255 + 0.5`` clamped and truncated, the exact op
    sequence of saving ``x * 0.5 + 0.5`` with ``torchvision.utils.save_image``; pytorch-fid then reads the
    PNG and ``ToTensor`` divides by 255. Un-quantized floats would shift FID slightly from the file-based one.
    """
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    levels = (images.float() * 0.5 + 0.5).mul_(255.0).add_(0.5).clamp_(0.0, 255.0).floor_()
    return levels / 255.0


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ LeNet
def pretrained_lenet(dataset: str = "mnist", device: str | torch.device = "cpu") -> tuple[LeNet, str]:
    """The committed LeNet for ``dataset`` ('mnist' or 'fashion_mnist') in eval mode, and its file sha256."""
    if dataset not in LENET_ASSETS:
        raise KeyError(f"no LeNet weights for {dataset!r}; available: {sorted(LENET_ASSETS)}")
    resource = resources.files("otgan_lab") / "assets" / LENET_ASSETS[dataset]
    data = resource.read_bytes()
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    model = LeNet()
    model.load_state_dict(state)
    return model.to(device).eval().requires_grad_(False), sha256_hex(data)


class _LeNetFeatures(nn.Module):
    def __init__(self, lenet: LeNet) -> None:
        super().__init__()
        self.lenet = lenet

    def forward(self, x: Tensor) -> Tensor:
        return self.lenet.features(x)


def prepare_for_lenet(images: Tensor) -> Tensor:
    """float [-1, 1] (or uint8) (N, 1, H, W) -> (N, 1, 28, 28); resizes e.g. 32×32 MNIST variants back."""
    x = _to_unit_float(images)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"LeNet features need grayscale (N, 1, H, W) images, got {tuple(x.shape)}")
    if x.shape[-2:] != (28, 28):
        x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
    return x


LENET_PREPROCESSING = "float[-1,1] 1x28x28 (uint8 input: x/127.5-1; other sizes: bilinear antialias resize)"


def lenet_backbone(
    dataset: str, batch_size: int = 1000, device: str | torch.device = "cpu"
) -> FeatureExtractor:
    lenet, digest = pretrained_lenet(dataset)
    short = "lenet_fashion" if dataset == "fashion_mnist" else f"lenet_{dataset}"
    return FeatureExtractor(
        name=short,
        network=_LeNetFeatures(lenet),
        dim=lenet.feature_dim,
        weights_hash=digest[:HASH_PREFIX_LEN],
        preprocessing=LENET_PREPROCESSING,
        prepare=prepare_for_lenet,
        batch_size=batch_size,
        device=device,
    )


# -------------------------------------------------------------------------------------------- Inception
def inception_weights_path(weights_path: str | os.PathLike | None = None) -> Path:
    """Locate pytorch-fid's FID Inception weights: the explicit ``weights_path`` (authoritative when given),
    else $OTLAB_INCEPTION_WEIGHTS, then the torch hub checkpoints folder (where pytorch-fid itself caches
    the file). Raises ``InceptionWeightsMissing`` if absent."""
    hub_path = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_FILE
    if weights_path:
        candidates = [Path(weights_path)]
    else:
        candidates = [Path(p) for p in (os.environ.get(FID_WEIGHTS_ENV),) if p] + [hub_path]
    for path in candidates:
        if path.is_file():
            return path
    from pytorch_fid.inception import FID_WEIGHTS_URL

    raise InceptionWeightsMissing(
        f"pytorch-fid Inception weights '{FID_WEIGHTS_FILE}' (sha256 prefix {FID_WEIGHTS_SHA256_PREFIX}) "
        f"not found; looked at: {', '.join(str(p) for p in candidates)}. This project does not download "
        f"it. Fetch it on a machine with internet from {FID_WEIGHTS_URL} and put it at {hub_path} "
        f"(the torch hub checkpoints dir), or pass its path as weights_path= / set ${FID_WEIGHTS_ENV}. "
        "Without it, use the 'lenet_mnist' (or 'lenet_fashion') backbone, whose weights ship with otgan_lab; "
        "LeNet-FID and Inception-FID are not comparable."
    )


_PATCH_LOCK = threading.Lock()


def _build_pytorch_fid_inception(state_dict: dict[str, Tensor] | None) -> nn.Module:
    """pytorch-fid's own ``InceptionV3([pool3], resize_input=True, normalize_input=True)``.

    pytorch-fid hard-codes a download in ``fid_inception_v3``; we swap its loader for one returning
    ``state_dict`` (already read from disk), so the network, its FID-specific blocks, resize and
    normalisation all come from pytorch-fid's real code. ``state_dict=None`` (tests only) loads the
    freshly built network's own random initialisation into itself.
    """
    from pytorch_fid import inception as fid_inception

    built: list[nn.Module] = []

    def capturing_constructor(*args, **kwargs):
        network = original_constructor(*args, **kwargs)
        built.append(network)
        return network

    def local_loader(url: str, *args, **kwargs) -> dict[str, Tensor]:
        return built[-1].state_dict() if state_dict is None else state_dict

    with _PATCH_LOCK:
        original_constructor = fid_inception._inception_v3
        original_loader = fid_inception.load_state_dict_from_url
        fid_inception._inception_v3 = capturing_constructor
        fid_inception.load_state_dict_from_url = local_loader
        try:
            block = fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]
            return fid_inception.InceptionV3([block], resize_input=True, normalize_input=True)
        finally:
            fid_inception._inception_v3 = original_constructor
            fid_inception.load_state_dict_from_url = original_loader


class _Pool3(nn.Module):
    """Wraps pytorch-fid's InceptionV3 and post-processes its output as ``get_activations`` does."""

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, x: Tensor) -> Tensor:
        pool = self.inception(x)[0]
        if pool.shape[2] != 1 or pool.shape[3] != 1:  # only for odd input sizes without resize
            pool = F.adaptive_avg_pool2d(pool, output_size=(1, 1))
        return pool.flatten(1)


def prepare_for_inception(images: Tensor) -> Tensor:
    """(N, 1|3, H, W) float [-1, 1] or uint8 -> (N, 3, H, W) in [0, 1] on the 256 PNG levels.

    Grayscale is repeated to 3 channels as PIL's ``convert('RGB')`` does in pytorch-fid; resizing to
    299×299 and scaling to [-1, 1] happen inside pytorch-fid's InceptionV3.
    """
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"Inception features need (N, 1|3, H, W) images, got {tuple(images.shape)}")
    x = _quantize_like_png(images)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


INCEPTION_PREPROCESSING = (
    "float[-1,1] -> uint8 PNG levels as save_image(x*0.5+0.5) -> /255; gray repeated to RGB; "
    "pytorch-fid InceptionV3(resize_input=True bilinear 299, normalize_input=True) pool3"
)


def inception_backbone(
    weights_path: str | os.PathLike | None = None,
    allow_random_weights: bool = False,
    seed: int = 0,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> FeatureExtractor:
    """pytorch-fid's Inception pool3 extractor (2048-d).

    ``allow_random_weights=True`` builds the same network with random (He-initialised, seeded) weights when
    (and only when) the weights file is missing; for wiring tests and throughput benchmarks. Its ``weights_hash`` is ``'random<seed>'`` so its features
    can never be mistaken for FID features in a cache or a record.
    """
    try:
        path = inception_weights_path(weights_path)
    except InceptionWeightsMissing:
        if not allow_random_weights:
            raise
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            network = _build_pytorch_fid_inception(None)
            # Default conv init shrinks activations ~6x per layer (pool3 ends up ~1e-7); He init keeps them
            # O(1), so a random-weight FID is a usable end-to-end smoke signal rather than ~0.
            for module in network.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        weights_hash = f"random{seed}"
    else:
        digest = _file_sha256(path)
        if not digest.startswith(FID_WEIGHTS_SHA256_PREFIX):
            raise ValueError(
                f"{path} has sha256 {digest[:16]}..., expected prefix {FID_WEIGHTS_SHA256_PREFIX}: "
                f"not pytorch-fid's '{FID_WEIGHTS_FILE}'"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        network = _build_pytorch_fid_inception(state)
        weights_hash = digest[:HASH_PREFIX_LEN]
    return FeatureExtractor(
        name="inception",
        network=_Pool3(network),
        dim=2048,
        weights_hash=weights_hash,
        preprocessing=INCEPTION_PREPROCESSING,
        prepare=prepare_for_inception,
        batch_size=batch_size,
        device=device,
    )


# --------------------------------------------------------------------------------------------- registry
_BACKBONES: dict[str, Callable[..., FeatureExtractor]] = {
    "lenet_mnist": lambda **kw: lenet_backbone("mnist", **kw),
    "lenet_fashion": lambda **kw: lenet_backbone("fashion_mnist", **kw),
    "inception": inception_backbone,
}


def register_backbone(name: str, factory: Callable[..., FeatureExtractor]) -> None:
    if name in _BACKBONES:
        raise KeyError(f"backbone {name!r} already registered")
    _BACKBONES[name] = factory


def available_backbones() -> list[str]:
    return sorted(_BACKBONES)


def get_backbone(name: str, **kwargs) -> FeatureExtractor:
    """Build a backbone by name; kwargs go to its factory (batch_size, device, weights_path, ...)."""
    if name not in _BACKBONES:
        raise KeyError(f"unknown feature backbone {name!r}; available: {available_backbones()}")
    return _BACKBONES[name](**kwargs)
