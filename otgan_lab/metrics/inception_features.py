"""The ``inception`` backbone: Inception-v3 pool3 features (2048-d) exactly as pytorch-fid computes them.

Szegedy et al., "Rethinking the Inception architecture", CVPR 2016; Heusel et al., "GANs trained by a two
time-scale update rule converge to a local Nash equilibrium", NeurIPS 2017, which defines FID; Seitzer,
pytorch-fid, 2020, the PyTorch port of the TF FID network whose weights we load. The network, its
FID-specific blocks, resize and normalisation are pytorch-fid's own code; this module only finds the
weights file on disk (never downloads it) and feeds it in.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from otgan_lab.errors import OtlabError
from otgan_lab.metrics.extractor import HASH_PREFIX_LEN, FeatureExtractor

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_SHA256_PREFIX = "6726825d"
FID_WEIGHTS_ENV = "OTLAB_INCEPTION_WEIGHTS"  # optional override of the weights file location


class InceptionWeightsMissing(OtlabError, FileNotFoundError):
    """pytorch-fid's Inception weights file is not on disk (and this project never downloads it)."""


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


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
        "LeNet-FID and Inception-FID are not comparable. On RGB data, 'random_conv' runs the metrics without "
        "it as a wiring check only (its numbers mean nothing)."
    )


_PATCH_LOCK = threading.Lock()


def _build_pytorch_fid_inception(state_dict: dict[str, Tensor] | None) -> nn.Module:
    """pytorch-fid's own ``InceptionV3([pool3], resize_input=True, normalize_input=True)``, built offline.

    pytorch-fid 0.3.0 has no public way to build its FID network from a local file: ``fid_inception_v3``
    always calls ``load_state_dict_from_url``. While building we swap two of its module globals: that
    loader, for one returning ``state_dict`` (already read and hash-checked), and the private
    ``_inception_v3``, to capture the fresh network so that ``state_dict=None`` (random weights: tests and
    benchmarks) loads its own initialisation. Both are pytorch-fid internals, hence the
    ``pytorch-fid>=0.3.0,<0.4`` pin in pyproject.toml; a release without them fails here, by name.
    """
    from pytorch_fid import inception as fid_inception

    missing = [n for n in ("_inception_v3", "load_state_dict_from_url") if not hasattr(fid_inception, n)]
    if missing:
        raise ImportError(f"pytorch_fid.inception has no {missing}: otgan_lab builds the FID Inception "
                          "through them; install pytorch-fid>=0.3.0,<0.4")
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


def _load_inception(weights_path: str | os.PathLike | None, allow_random_weights: bool,
                    seed: int) -> tuple[nn.Module, str, Tensor]:
    """(pytorch-fid's InceptionV3 to pool3, weights hash, the 1008-way classifier's fc.weight (1008, 2048)).

    The FID weights file is the TF Inception of 2015-12-05 that the original Inception Score code used; its
    `fc` layer (1008 classes) is in the file even though pytorch-fid's FID network stops at pool3."""
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
            fc_weight = torch.randn(1008, 2048) / 2048**0.5
        return network, f"random{seed}", fc_weight
    digest = file_sha256(path)
    if not digest.startswith(FID_WEIGHTS_SHA256_PREFIX):
        raise ValueError(
            f"{path} has sha256 {digest[:16]}..., expected prefix {FID_WEIGHTS_SHA256_PREFIX}: "
            f"not pytorch-fid's '{FID_WEIGHTS_FILE}'"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    return _build_pytorch_fid_inception(state), digest[:HASH_PREFIX_LEN], state["fc.weight"]


def inception_backbone(
    weights_path: str | os.PathLike | None = None,
    allow_random_weights: bool = False,
    seed: int = 0,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> FeatureExtractor:
    """pytorch-fid's Inception pool3 extractor (2048-d).

    ``allow_random_weights=True`` builds the same network with random (He-initialised, seeded) weights
    when (and only when) the weights file is missing; for wiring tests and throughput benchmarks. Its
    ``weights_hash`` is ``'random<seed>'`` so its features can never be mistaken for FID features in a
    cache or a record.
    """
    network, weights_hash, _ = _load_inception(weights_path, allow_random_weights, seed)
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


class _Logits(nn.Module):
    """pool3 (2048) -> the 1008 class logits without the bias, as the original IS code computes them
    (Salimans et al. 2016, openai/improved-gan: ``softmax(pool3 @ W)``; torch-fidelity's
    'logits_unbiased')."""

    def __init__(self, inception: nn.Module, fc_weight: Tensor) -> None:
        super().__init__()
        self.pool3 = _Pool3(inception)
        self.register_buffer("fc_weight", fc_weight.float().clone())

    def forward(self, x: Tensor) -> Tensor:
        return self.pool3(x) @ self.fc_weight.T


def inception_logits_backbone(
    weights_path: str | os.PathLike | None = None,
    allow_random_weights: bool = False,
    seed: int = 0,
    batch_size: int = 50,
    device: str | torch.device = "cpu",
) -> FeatureExtractor:
    """The Inception Score's classifier: the same network and weights file as FID, 1008 logits."""
    network, weights_hash, fc_weight = _load_inception(weights_path, allow_random_weights, seed)
    return FeatureExtractor(
        name="inception_logits",
        network=_Logits(network, fc_weight),
        dim=1008,
        weights_hash=weights_hash,
        preprocessing=INCEPTION_PREPROCESSING + " -> @ fc.weight^T (1008 logits, no bias)",
        prepare=prepare_for_inception,
        batch_size=batch_size,
        device=device,
    )


def _check_weights(weights_path: str | os.PathLike | None = None) -> Path:
    """What `otlab` checks before training: the file is there (InceptionWeightsMissing otherwise)."""
    return inception_weights_path(weights_path)


# the backbone registry asks a factory for its files before any work (features.backbone_problem)
inception_backbone.check_weights = _check_weights  # type: ignore[attr-defined]
inception_logits_backbone.check_weights = _check_weights  # type: ignore[attr-defined]
