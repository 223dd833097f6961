"""Published checkpoints: the catalogue, the download cache, and loading any file by its format.

``load("progan-church")`` downloads the published file once into a per-user cache
(``$GANDISSECT_CACHE`` or ``~/.cache/gandissect-widgets``), checks its checksum and builds the
model; ``load("path/to/file.pth")`` detects the layout of a local file. Files are always read
with ``weights_only=True`` (or as safetensors); NVIDIA StyleGAN2-ADA ``.pkl`` snapshots with the
restricted unpickler of :mod:`.ada_pickle`, which never runs the code they carry.

A loaded generator carries ``model.source`` (a :class:`Source`): the layout it came from and each
tensor's shape and dtype there, so :func:`gandissect_widgets.export.export` can write an edited
copy that the original project's loader reads.

Example (not run in the tests: it downloads weights, or reads your own file):
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
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from . import ada_pickle, vit
from .classifiers import classifier_from_state_dict, is_resnet, is_vgg16
from .progan import ProgressiveGenerator
from .stylegan2 import from_rosinality

__all__ = [
    "CATALOGUE",
    "CatalogueEntry",
    "OfflineError",
    "Source",
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


# ---------------------------------------------------------------------------------- source
@dataclass
class Source:
    """Where a generator came from, so an edited copy can be written in the same layout.

    ``format``: "hamlet", "progan", "rosinality" or "stylegan2-ada"; ``container``: "torch",
    "safetensors" or "pickle"; ``layout``: key -> (shape, dtype) of the file's tensors in the
    file's own key names (for rosinality the ``g_ema`` keys); ``top``: the file's top-level
    keys when it wraps the tensors (``("g_ema", "latent_avg")``); ``extras``: tensors of the
    layout the model does not hold (written back as they were); ``config``: settings beside
    the tensors (ADA's ``conv_clamp``, gains, init kwargs).
    """

    format: str
    container: str
    path: str | None = None
    layout: dict = field(default_factory=dict, repr=False)
    top: tuple = ()
    extras: dict = field(default_factory=dict, repr=False)
    config: dict = field(default_factory=dict, repr=False)


def _layout(tensors: dict) -> dict:
    return {k: (tuple(v.shape), v.dtype) for k, v in tensors.items() if isinstance(v, torch.Tensor)}


def safetensors_source(path, format: str) -> Source:
    """A :class:`Source` for a safetensors file, from its header (no tensor is read)."""
    from safetensors import safe_open

    dtypes = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32,
              "F64": torch.float64}  # fmt: skip
    layout = {}
    with safe_open(str(path), "pt") as f:
        for k in f.keys():
            sl = f.get_slice(k)
            layout[k] = (tuple(sl.get_shape()), dtypes.get(sl.get_dtype(), torch.float32))
    return Source(format, "safetensors", str(path), layout)


# ---------------------------------------------------------------------------------- formats
_KNOWN = (
    "ProGAN state_dict (layer1.conv.weight, layer1.wscale.b, ..., output_RxR.conv.weight); "
    "rosinality StyleGAN2 checkpoint ({'g_ema': state_dict, 'latent_avg': tensor}); "
    "NVIDIA StyleGAN2-ADA network pickle (.pkl, read without running its code) or its G_ema "
    "state_dict (mapping.fc0.weight, synthesis.b4.const, ...); "
    "torchvision VGG16 state_dict (features.0.weight, ..., classifier.6.weight); "
    "torchvision ResNet state_dict (conv1.weight, layer1.0.conv1.weight, ..., fc.weight); "
    "torchvision ViT state_dict (conv_proj.weight, encoder.pos_embedding, ...) or timm's "
    "(patch_embed.proj.weight, pos_embed, blocks.0.attn.qkv.weight, ...); "
    "each optionally wrapped in {'state_dict': ...} with 'module.' prefixes"
)


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _is_plain_pickle(path: Path) -> bool:
    """A pickle stream that is not a torch zip archive (an ADA snapshot, or legacy torch)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and not zipfile.is_zipfile(path)


def read_checkpoint(path) -> dict:
    """The contents of a checkpoint file, read safely: ``weights_only=True``, safetensors, or
    (``.pkl``, or a plain pickle torch refuses) the restricted StyleGAN2-ADA unpickler, whose
    persistent-class records come back as :class:`.ada_pickle.PersistentRecord` data."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.suffix == ".pkl":
        return _read_pickle(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any parse failure (the unpickler raises many kinds) is "invalid"
        first = _first_line(e)
        if path.suffix != ".safetensors" and _is_plain_pickle(path):
            try:  # a StyleGAN2-ADA snapshot under another name; anything else stays refused
                data = ada_pickle.read_pickle(path)
            except Exception:
                data = None
            if _has_generator(data):
                return data
        raise ValueError(
            f"{path} is not a valid checkpoint (or holds more than weights, which is refused for "
            f"safety): {first}. Known layouts: {_KNOWN}"
        ) from None


def _has_generator(data) -> bool:
    try:
        ada_pickle.generator_record(data)
    except ValueError:
        return False
    return True


def _read_pickle(path: Path):
    try:
        return ada_pickle.read_pickle(path)
    except ada_pickle.UnsafePickleError as e:
        raise ada_pickle.UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:
        raise ValueError(
            f"{path} is not a readable StyleGAN2-ADA pickle: {_first_line(e)}. Known layouts: "
            f"{_KNOWN}"
        ) from None


def _unwrap(obj):
    if not isinstance(obj, dict):
        return obj
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
    """ "progan", "stylegan2", "stylegan2-ada", "vit", "vgg16" or "resnet" for checkpoint contents.

    >>> detect_format({"g_ema": {}, "latent_avg": torch.zeros(4)})
    'stylegan2'
    """
    if isinstance(obj, ada_pickle.PersistentRecord) or (
        isinstance(obj, dict)
        and any(isinstance(v, ada_pickle.PersistentRecord) for v in obj.values())
    ):
        return "stylegan2-ada"
    if not isinstance(obj, dict):
        raise ValueError(
            f"a checkpoint must hold a dict of tensors; found {type(obj).__name__}. "
            f"Known layouts: {_KNOWN}"
        )
    obj = _unwrap(obj)
    if "g_ema" in obj or ("style.1.weight" in obj and "conv1.conv.weight" in obj):
        return "stylegan2"
    if ada_pickle.is_ada_state_dict(obj):
        return "stylegan2-ada"
    if "layer1.conv.weight" in obj and "layer1.wscale.b" in obj:
        return "progan"
    if vit.is_vit(obj):
        return "vit"
    if is_vgg16(obj):
        return "vgg16"
    if is_resnet(obj):
        return "resnet"
    keys = [str(k) for k in list(obj)[:8]]
    raise ValueError(f"unrecognised checkpoint layout; found keys {keys}. Known layouts: {_KNOWN}")


def model_from_checkpoint(obj, *, normalization="imagenet", metadata=None) -> nn.Module:
    """Build and load the model that checkpoint contents ``obj`` describe (eval mode, CPU).

    A generator gets ``model.source`` (a :class:`Source` without ``path``); ``metadata`` is a
    safetensors file's header metadata (an ADA layout file keeps ``conv_clamp`` there).
    """
    kind = detect_format(obj)
    try:
        if kind == "stylegan2-ada" and not ada_pickle.is_ada_state_dict(_unwrap(obj)):
            return _from_ada_records(obj)  # an unpickled snapshot: records, not tensors
        obj = _unwrap(obj)
        if kind == "stylegan2-ada":
            config = _metadata_config(metadata)
            g = ada_pickle.from_ada_state_dict(obj, config)
            g.source = Source("stylegan2-ada", "torch", None, _layout(obj), config=config)
            g.source.extras = {k: v.clone() for k, v in obj.items() if k.endswith("filter")}
            return g
        if kind == "stylegan2":
            g = from_rosinality(obj)
            wrapped = "g_ema" in obj
            sd = obj["g_ema"] if wrapped else obj
            top = tuple(k for k in ("g_ema", "latent_avg") if k in obj) if wrapped else ()
            g.source = Source("rosinality", "torch", None, _layout(sd), top)
            if wrapped and isinstance(obj.get("latent_avg"), torch.Tensor):
                g.source.config["latent_avg"] = _layout(obj)["latent_avg"]
            return g
        if kind == "progan":
            g = ProgressiveGenerator.from_state_dict(obj).eval()
            g.source = Source("progan", "torch", None, _layout(obj))
            return g
        if kind == "vit":
            return vit.vit_from_state_dict(obj, normalization)
        return classifier_from_state_dict(obj, normalization)
    except (KeyError, RuntimeError) as e:
        msg = e.args[0] if e.args else e
        raise ValueError(f"the checkpoint looks like {kind} but does not load: {msg}") from None


def _from_ada_records(obj) -> nn.Module:
    g, ada = ada_pickle.generator_from_data(obj)
    g.source = Source("stylegan2-ada", "pickle", None, ada.layout, (), ada.extras, ada.config)
    return g


def _metadata_config(metadata) -> dict:
    """Our loader's ADA settings from safetensors metadata (strings; JSON values)."""
    import json

    cfg = {}
    for key in ("conv_clamp", "mapping_lr", "architecture", "init_kwargs"):
        if metadata and key in metadata:
            try:
                cfg[key] = json.loads(metadata[key])
            except ValueError:
                raise ValueError(f"bad {key!r} metadata {metadata[key]!r}") from None
    return cfg


def _safetensors_metadata(path: Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # a damaged header: safetensors' own error does not name the file
        raise ValueError(f"{path} is not a valid .safetensors file: {_first_line(e)}") from None


def load(name_or_path, *, cache_dir=None, progress=True) -> nn.Module:
    """A model from a catalogue name (downloaded on first use) or a local checkpoint file.

    Example (not run in the tests: it downloads weights):
        >>> g = load("stylegan2-church")                     # doctest: +SKIP
        >>> g.truncation = 0.5                               # doctest: +SKIP
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"give a catalogue name or a file path; got {type(name_or_path).__name__}")
    name = str(name_or_path)
    normalization = "imagenet"
    if name in CATALOGUE:
        normalization = CATALOGUE[name].normalization
        path = download(name, cache_dir=cache_dir, progress=progress)
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"{name!r} is neither a catalogue name ({', '.join(sorted(CATALOGUE))}) "
                "nor an existing file"
            )
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a checkpoint file or a catalogue name")
    metadata = _safetensors_metadata(path) if path.suffix == ".safetensors" else None
    model = model_from_checkpoint(
        read_checkpoint(path), normalization=normalization, metadata=metadata
    )
    bad = [
        n for n, t in model.state_dict().items() if t.is_floating_point() and not t.isfinite().all()
    ]
    if bad:
        warnings.warn(
            f"{path}: the weights hold NaN or infinite values in {', '.join(bad[:4])}"
            f"{' and more' if len(bad) > 4 else ''}; the model's outputs will not be finite",
            stacklevel=2,
        )
    source = getattr(model, "source", None)
    if isinstance(source, Source):
        source.path = str(path)
        if path.suffix == ".safetensors":
            source.container = "safetensors"
    return model
