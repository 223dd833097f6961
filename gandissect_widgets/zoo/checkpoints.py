"""Published checkpoints: the catalogue, the download cache, and loading any file by its format.

``load("progan-church")`` downloads the published file once into a per-user cache
(``$GANDISSECT_CACHE`` or ``~/.cache/gandissect-widgets``), checks its checksum and builds the
model; ``load("path/to/file.pth")`` detects the layout of a local file. Files are always read
with ``weights_only=True`` (or as safetensors).

Example:
    >>> g = load("progan-church")                          # doctest: +SKIP
    >>> g = load("~/models/my_stylegan2.pt")               # doctest: +SKIP
    >>> sorted(CATALOGUE)[:2]
    ['progan-bedroom', 'progan-celebhq']
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .classifiers import classifier_from_state_dict, is_resnet, is_vgg16
from .progan import ProgressiveGenerator
from .stylegan2 import from_rosinality

__all__ = [
    "CATALOGUE",
    "CatalogueEntry",
    "OfflineError",
    "cache_folder",
    "download",
    "load",
    "read_checkpoint",
    "detect_format",
    "model_from_checkpoint",
]

_GANDISSECT = "http://gandissect.csail.mit.edu/models/"
_REWRITING = "http://rewriting.csail.mit.edu/data/models/"
_PLACES = "http://places2.csail.mit.edu/models_places365/"


@dataclass(frozen=True)
class CatalogueEntry:
    """A published checkpoint: where it lives, how to check it, what it holds.

    ``sha256`` is the full digest or a prefix of it (the published file names carry the first 8
    hex digits, torch.hub style); ``md5`` is checked when given.
    """

    url: str
    kind: str
    sha256: str | None = None
    md5: str | None = None
    normalization: str = "imagenet"
    note: str = ""

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def _hub(base, filename, kind, note, **kw):
    digest = filename.rsplit("-", 1)[-1].split(".")[0]
    return CatalogueEntry(base + filename, kind, sha256=digest, note=note, **kw)


_PROGAN = {
    "bedroom": "proggan_bedroom-d8a89ff1.pth",
    "church": "proggan_churchoutdoor-7e701dd5.pth",
    "conferenceroom": "proggan_conferenceroom-21e85882.pth",
    "diningroom": "proggan_diningroom-3aa0ab80.pth",
    "kitchen": "proggan_kitchen-67f1e16c.pth",
    "livingroom": "proggan_livingroom-5ef336dd.pth",
    "restaurant": "proggan_restaurant-b8578299.pth",
    "celebhq": "proggan_celebhq-620d161c.pth",
}
_STYLEGAN2 = {
    "bedroom": "stylegan2_bedroom-6fa55a6e.pt",
    "car": "stylegan2_car-3659b4b6.pt",
    "cat": "stylegan2_cat-d8dc98b2.pt",
    "church": "stylegan2_church-e8ca9fd0.pt",
    "faces": "stylegan2_faces-2858cc2e.pt",
    "horse": "stylegan2_horse-499b5380.pt",
    "kitchen": "stylegan2_kitchen-b3a526e9.pt",
    "places": "stylegan2_places-a3b72d71.pt",
}

#: name -> published checkpoint (addresses as used by the GAN Dissection, dissect and rewriting
#: projects of D. Bau et al., and the Places365 project).
CATALOGUE: dict[str, CatalogueEntry] = {
    **{
        f"progan-{k}": _hub(_GANDISSECT, f, "progan", f"Progressive GAN, LSUN {k} (Karras et al.)")
        for k, f in _PROGAN.items()
    },
    **{
        f"stylegan2-{k}": _hub(_REWRITING, f, "stylegan2", f"StyleGAN2 {k}, rosinality format")
        for k, f in _STYLEGAN2.items()
    },
    "vgg16-places365": _hub(
        _GANDISSECT,
        "vgg16_places365-6e38b568.pth",
        "classifier",
        "VGG16 trained on Places365 (converted from Caffe)",
        normalization="places_meanonly",
    ),
    "resnet18-places365": CatalogueEntry(
        _PLACES + "resnet18_places365.pth.tar",
        "classifier",
        md5="7a8808eefd4ea7458650ca84855f69b1",
        note="ResNet-18 trained on Places365 (CSAIL Places365 project)",
    ),
}


class OfflineError(ConnectionError):
    """A catalogue file is not cached and could not be downloaded."""


def cache_folder(path=None) -> Path:
    """Where downloads live: ``path``, else ``$GANDISSECT_CACHE``, else
    ``~/.cache/gandissect-widgets``."""
    if path is None:
        path = os.environ.get("GANDISSECT_CACHE") or Path.home() / ".cache" / "gandissect-widgets"
    return Path(path).expanduser()


def _entry(name: str) -> CatalogueEntry:
    if name not in CATALOGUE:
        raise KeyError(
            f"unknown checkpoint {name!r}; known names are: {', '.join(sorted(CATALOGUE))} "
            "(or give the path of a local file)"
        )
    return CATALOGUE[name]


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def _verify(path: Path, entry: CatalogueEntry) -> None:
    if not (entry.sha256 or entry.md5):
        return
    sha, md5 = _digests(path)
    if entry.sha256 and not sha.startswith(entry.sha256.lower()):
        bad = f"sha256 {sha} (expected one starting {entry.sha256})"
    elif entry.md5 and md5 != entry.md5.lower():
        bad = f"md5 {md5} (expected {entry.md5})"
    else:
        return
    raise ValueError(
        f"checksum mismatch for {path}: {bad}; the file is damaged or not the published one. "
        f"Delete it and download it again from {entry.url}"
    )


_open_url = urllib.request.urlopen  # replaced in tests: no test touches the network


def _fetch(entry: CatalogueEntry, target: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    part = target.with_name(target.name + ".part")
    try:
        with _open_url(entry.url, timeout=30) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=target.name, disable=not progress
            ) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as e:
        part.unlink(missing_ok=True)
        reason = getattr(e, "reason", e)
        raise OfflineError(
            f"could not download {entry.url} ({reason}). Without network access, fetch that "
            f"file elsewhere and place it by hand at: {target}"
        ) from e
    try:
        _verify(part, entry)
    except ValueError:
        part.unlink(missing_ok=True)
        raise
    part.replace(target)


def download(name: str, *, cache_dir=None, progress=True) -> Path:
    """The local path of catalogue file ``name``, downloading it first if it is not cached.

    A cached file is used without network access (and its checksum checked). Raises
    :class:`OfflineError` (a ``ConnectionError``) naming the address and the exact path where
    the file can be placed by hand.
    """
    entry = _entry(name)
    folder = cache_folder(cache_dir)
    target = folder / entry.filename
    if target.exists():
        _verify(target, entry)
        return target
    folder.mkdir(parents=True, exist_ok=True)
    _fetch(entry, target, progress)
    return target


# ---------------------------------------------------------------------------------- formats
_KNOWN = (
    "ProGAN state_dict (layer1.conv.weight, layer1.wscale.b, ..., output_RxR.conv.weight); "
    "rosinality StyleGAN2 checkpoint ({'g_ema': state_dict, 'latent_avg': tensor}); "
    "torchvision VGG16 state_dict (features.0.weight, ..., classifier.6.weight); "
    "torchvision ResNet state_dict (conv1.weight, layer1.0.conv1.weight, ..., fc.weight); "
    "each optionally wrapped in {'state_dict': ...} with 'module.' prefixes"
)


def read_checkpoint(path) -> dict:
    """The contents of a checkpoint file, read safely (``weights_only=True`` or safetensors)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any parse failure (the unpickler raises many kinds) is "invalid"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"{path} is not a valid checkpoint (or holds more than weights, which is refused for "
            f"safety): {first}. Known layouts: {_KNOWN}"
        ) from None


def _unwrap(obj):
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict) and "g_ema" not in obj:
            obj = obj[key]
    if isinstance(obj, dict) and "g_ema" in obj:
        return obj
    if isinstance(obj, dict):
        return {(k[7:] if isinstance(k, str) and k.startswith("module.") else k): v
                for k, v in obj.items()}  # fmt: skip
    return obj


def detect_format(obj) -> str:
    """ "progan", "stylegan2", "vgg16" or "resnet" for loaded checkpoint contents.

    >>> detect_format({"g_ema": {}, "latent_avg": torch.zeros(4)})
    'stylegan2'
    """
    if not isinstance(obj, dict):
        raise ValueError(
            f"a checkpoint must hold a dict of tensors; found {type(obj).__name__}. "
            f"Known layouts: {_KNOWN}"
        )
    obj = _unwrap(obj)
    if "g_ema" in obj or ("style.1.weight" in obj and "conv1.conv.weight" in obj):
        return "stylegan2"
    if "layer1.conv.weight" in obj and "layer1.wscale.b" in obj:
        return "progan"
    if is_vgg16(obj):
        return "vgg16"
    if is_resnet(obj):
        return "resnet"
    keys = [str(k) for k in list(obj)[:8]]
    raise ValueError(f"unrecognised checkpoint layout; found keys {keys}. Known layouts: {_KNOWN}")


def model_from_checkpoint(obj, *, normalization="imagenet") -> nn.Module:
    """Build and load the model that checkpoint contents ``obj`` describe (eval mode, CPU)."""
    kind = detect_format(obj)
    obj = _unwrap(obj)
    try:
        if kind == "stylegan2":
            return from_rosinality(obj)
        if kind == "progan":
            return ProgressiveGenerator.from_state_dict(obj).eval()
        return classifier_from_state_dict(obj, normalization)
    except (KeyError, RuntimeError) as e:
        msg = e.args[0] if e.args else e
        raise ValueError(f"the checkpoint looks like {kind} but does not load: {msg}") from None


def load(name_or_path, *, cache_dir=None, progress=True) -> nn.Module:
    """A model from a catalogue name (downloaded on first use) or a local checkpoint file.

    Example:
        >>> g = load("stylegan2-church")                     # doctest: +SKIP
        >>> g.truncation = 0.5                               # doctest: +SKIP
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"give a catalogue name or a file path; got {type(name_or_path).__name__}")
    name = str(name_or_path)
    if name in CATALOGUE:
        entry = CATALOGUE[name]
        path = download(name, cache_dir=cache_dir, progress=progress)
        return model_from_checkpoint(read_checkpoint(path), normalization=entry.normalization)
    path = Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"{name!r} is neither a catalogue name ({', '.join(sorted(CATALOGUE))}) "
            "nor an existing file"
        )
    return model_from_checkpoint(read_checkpoint(path))
