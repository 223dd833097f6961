"""The Rewrite edit (a rank-r change of one conv weight, or of a token layer's nn.Linear) and
its file format (.npz).

>>> edit = session.rewrite("layer6", [(3, roof3)], (1, tree1), (3, (20, 30)), steps=20,
...                        stat_samples=100)
>>> edit.save("rule.npz"); session.undo() is edit
PosixPath('rule.npz')
True
>>> session.push(load_edit("rule.npz")).describe()
'rewrite layer6 (rank 1)'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..cache import weights_fingerprint
from ..edits import WeightEdit

__all__ = ["Rewrite", "load_edit", "FORMAT"]

FORMAT = "gandissect-widgets rewrite 1"


class Rewrite(WeightEdit):
    """A rank-``r`` change of one conv weight (or one nn.Linear weight), with its request.

    ``delta = einsum("orab,ri->oiab", lam, directions)`` is added to ``param`` (e.g.
    ``"conv.weight"``) of block ``layer``. For a token layer's nn.Linear, ``lam`` is
    (C_out, r) and ``delta = lam @ directions`` (C_out, C_in): the math of a 1x1 convolution.
    That Linear acts on every token, so the prefix (class, register) tokens get the same
    weight change, although only the patch tokens are keys and values of the fit. The
    Session refuses the edit on weights other than those it was made for (``fingerprint``);
    undo restores them bit-exactly.

    >>> e = Rewrite("layer6", "conv.weight", torch.ones(1, 4), torch.zeros(8, 1, 3, 3),
    ...             request={"rank": 1}, fingerprint="ab12")
    >>> e.delta.shape, e.describe()
    (torch.Size([8, 4, 3, 3]), 'rewrite layer6 (rank 1)')
    >>> Rewrite("blocks.0.mlp.fc1", "weight", torch.ones(1, 4), torch.zeros(8, 1),
    ...         request={"rank": 1}, fingerprint="ab12").delta.shape
    torch.Size([8, 4])
    """

    kind = "rewrite"

    def __init__(
        self,
        layer: str,
        param: str,
        directions: torch.Tensor,
        lam: torch.Tensor,
        *,
        request: dict,
        fingerprint: str,
        losses: Sequence[float] = (),
        seconds: float = 0.0,
    ):
        if not (isinstance(directions, torch.Tensor) and isinstance(lam, torch.Tensor)):
            raise TypeError("directions and lam must be torch tensors")
        if directions.dim() != 2 or lam.dim() not in (2, 4) or lam.shape[1] != directions.shape[0]:
            raise ValueError(
                f"directions must be (rank, C_in) and lam (C_out, rank, kh, kw) (a conv) or "
                f"(C_out, rank) (a Linear) of the same rank; got directions "
                f"{tuple(directions.shape)}, lam {tuple(lam.shape)}"
            )
        self.directions = directions.detach().float().cpu().contiguous()
        self.lam = lam.detach().float().cpu().contiguous()
        super().__init__(layer, param, delta_of(self.lam, self.directions))
        self.request = request
        self.fingerprint = fingerprint
        self.losses = [float(x) for x in losses]
        self.seconds = float(seconds)

    @property
    def rank(self) -> int:
        return int(self.directions.shape[0])

    def check(self, model) -> None:
        """Refuse to apply onto weights other than those the edit was made for (first: on
        another model the layer may not even exist)."""
        found = weights_fingerprint(model)
        if found != self.fingerprint:
            raise ValueError(
                f"this rewrite was made for weights with fingerprint {self.fingerprint}, but the "
                f"model's weights have fingerprint {found}: it belongs to another model (or to "
                "another stack of weight edits)"
            )
        super().check(model)

    def describe(self) -> str:
        return f"rewrite {self.layer} (rank {self.rank})"

    def save(self, path) -> Path:
        """Write the request, the factors of the delta and the fingerprint to ``path`` (.npz).

        >>> edit = session.rewrite("layer6", [(3, roof3)], (1, tree1), (3, (20, 30)),
        ...                        steps=20, stat_samples=100)
        >>> edit.save("rule.npz")
        PosixPath('rule.npz')
        """
        req = self.request
        arrays = {
            "format": np.array(FORMAT),
            "layer": np.array(self.layer),
            "param": np.array(self.param),
            "fingerprint": np.array(self.fingerprint),
            "directions": self.directions.numpy(),
            "lam": self.lam.numpy(),
            "losses": np.asarray(self.losses, np.float32),
            "seconds": np.array(self.seconds),
            "steps": np.array(int(req["steps"])),
            "lr": np.array(float(req["lr"])),
            "context_seeds": np.array([s for s, _ in req["context"]], np.int64),
            "context_masks": np.stack([m for _, m in req["context"]]).astype(np.float32),
            "copy_seed": np.array(req["copy"][0]),
            "copy_mask": req["copy"][1].astype(np.float32),
            "paste_seed": np.array(req["paste"][0]),
        }
        where = req["paste"][1]
        key = "paste_mask" if isinstance(where, np.ndarray) else "paste_yx"
        arrays[key] = np.asarray(where, np.float32)
        path = Path(path)
        np.savez_compressed(path, **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_edit(path) -> Rewrite:
    """Read a :class:`Rewrite` written by :meth:`Rewrite.save`; push it to apply it.

    No optimisation runs; pushing onto a model with other weights raises ValueError.

    >>> edit = session.rewrite("layer6", [(3, roof3)], (1, tree1), (3, (20, 30)), steps=20,
    ...                        stat_samples=100)
    >>> path = edit.save("rule.npz"); session.undo() is edit
    True
    >>> session.push(load_edit("rule.npz")).layer
    'layer6'
    """
    a = _read_npz(path)
    if str(a.get("format", "")) != FORMAT:
        raise ValueError(f"{path} is not a saved rewrite (expected format {FORMAT!r})")
    needed = ["layer", "param", "fingerprint", "directions", "lam", "losses", "seconds", "steps"]
    needed += ["lr", "context_seeds", "context_masks", "copy_seed", "copy_mask", "paste_seed"]
    missing = [k for k in needed if k not in a] + (
        [] if "paste_mask" in a or "paste_yx" in a else ["paste_mask or paste_yx"]
    )
    if missing:
        raise ValueError(f"{path} is an incomplete saved rewrite: missing {', '.join(missing)}")
    _check_arrays(path, a)
    paste = a["paste_mask"] if "paste_mask" in a else tuple(float(v) for v in a["paste_yx"])
    directions = torch.from_numpy(a["directions"])
    request = {
        "layer": str(a["layer"]),
        "context": [(int(s), m) for s, m in zip(a["context_seeds"], a["context_masks"])],
        "copy": (int(a["copy_seed"]), a["copy_mask"]),
        "paste": (int(a["paste_seed"]), paste),
        "rank": int(directions.shape[0]),
        "steps": int(a["steps"]),
        "lr": float(a["lr"]),
    }
    return Rewrite(
        str(a["layer"]),
        str(a["param"]),
        directions,
        torch.from_numpy(a["lam"]),
        request=request,
        fingerprint=str(a["fingerprint"]),
        losses=a["losses"].tolist(),
        seconds=float(a["seconds"]),
    )


def _read_npz(path) -> dict:
    """The arrays of a .npz file; ValueError naming ``path`` when it is not one (a missing
    file stays FileNotFoundError)."""
    try:
        with open(path, "rb") as fh:
            f = np.load(fh, allow_pickle=False)
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise ValueError("it holds one array (.npy), not the arrays of a rewrite")
            with f:
                return {k: f[k] for k in f.files}
    except (FileNotFoundError, IsADirectoryError):
        raise
    except Exception as err:  # empty, truncated, random, pickled objects...
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "allow_pickle" in why:
            why = "it holds Python objects, which are never loaded"
        raise ValueError(
            f"{path} is not a saved rewrite (a .npz file written by Rewrite.save): {why}"
        ) from None


def _check_arrays(path, a: dict) -> None:
    """Refuse arrays that do not make one consistent rewrite (ValueError naming ``path``)."""
    d, lam, masks = a["directions"], a["lam"], a["context_masks"]
    problems = []
    if d.ndim != 2 or lam.ndim not in (2, 4) or lam.shape[1] != d.shape[0] or not d.shape[0]:
        problems.append(
            f"directions {d.shape} and lam {lam.shape} are not (rank, C_in) and "
            "(C_out, rank, kh, kw) or (C_out, rank) of one rank"
        )
    for name in ("directions", "lam"):
        if not np.issubdtype(a[name].dtype, np.floating) or not np.isfinite(a[name]).all():
            problems.append(f"{name} is not finite floating point (NaN or infinity?)")
    seeds = a["context_seeds"]
    if masks.ndim != 3 or seeds.shape != (masks.shape[0],):
        problems.append(f"{seeds.shape[0] if seeds.ndim else 0} context seeds for masks of "
                        f"shape {masks.shape}")  # fmt: skip
    elif a["copy_mask"].shape != masks.shape[1:] or (
        "paste_mask" in a and a["paste_mask"].shape != masks.shape[1:]
    ):
        problems.append("its copy/paste masks and context masks differ in shape")
    if "paste_yx" in a and a["paste_yx"].shape != (2,):
        problems.append(f"paste_yx has shape {a['paste_yx'].shape}, not (2,)")
    if problems:
        raise ValueError(f"{path} is not a consistent saved rewrite: {'; '.join(problems)}")


def delta_of(lam: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """(C_out, r, kh, kw) x (r, C_in) -> (C_out, C_in, kh, kw) for a conv; (C_out, r) x
    (r, C_in) -> (C_out, C_in) for a Linear (a 1x1 conv without the kernel axes)."""
    if lam.dim() == 2:
        return lam @ directions
    return torch.einsum("orab,ri->oiab", lam, directions)
