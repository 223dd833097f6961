"""Train the hamlet encoder (picture -> latent) on one CPU core, seeds fixed, with checkpoints.

Usage::

    python -m gandissect_widgets.zoo.hamlet.train_encoder [--out runs/encoder] [--steps A B]

Two stages. First, on a pool of the generator's own samples ``G(z)`` (drawn once): the
encoder's latent must give the same layer5 features as ``z`` (only the generator's cheap first
layers run backwards).
Then, on world renders of training seeds (below ``TEST_SEED_START``): the generator's picture
of the encoder's latent must match the render (mean squared error on pixels and on 4x4 means),
which closes the gap between samples and pictures. Writes ``OUT/encoder_STEP.safetensors``
every 250 steps, resumes from ``OUT/ckpt.pt``, and ends with ``OUT/encoder.safetensors``
(float16). The shipped ``weights/encoder.safetensors`` is ``OUT/encoder_000500.safetensors``
(sha256 658aa2e8...), so halfway through the first stage: one core of the shared machine gave
no more in time (BENCHMARKS.md, "Photo inversion", has its figures).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from . import load_generator
from .encoder import Encoder
from .world import TEST_SEED_START, render

FEATURE_LAYER = "layer5"


def _features(g, z, upto=FEATURE_LAYER):
    h = z.view(z.shape[0], -1, 1, 1)
    for name, module in g.named_children():
        h = module(h)
        if name == upto:
            return h
    raise KeyError(upto)


def _renders(rng, n):
    images, _, _ = render(rng.integers(0, TEST_SEED_START, n))
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def _pool(g, n, seed=7, chunk=256):
    """``n`` latents and their pictures (float16), drawn in a fixed order."""
    zs = torch.randn(n, g.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        xs = torch.cat([g(c).clamp(-1, 1).half() for c in zs.split(chunk)])
    return zs, xs


def train(out: Path, steps=(1000, 700), batch=(64, 16), pool=3072, lr=1e-3, save_every=250):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    g = load_generator()
    g.output_64x64.clamp = torch.nn.Identity()  # no gradient cliff at +-1
    for p in g.parameters():
        p.requires_grad_(False)
    enc = Encoder(g.z_dim)
    opt = torch.optim.Adam(enc.parameters(), lr=lr)
    total = sum(steps)
    step, rng, gen = 0, np.random.default_rng(5), torch.Generator().manual_seed(6)
    ckpt = out / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        enc.load_state_dict(state["enc"])
        opt.load_state_dict(state["opt"])
        step, rng = state["step"], state["rng"]
        gen.set_state(state["gen"])
        print(f"resumed at step {step}", flush=True)
    t0 = time.time()
    zs, xs = _pool(g, pool) if step < steps[0] else (None, None)
    print(f"pool of {pool} samples drawn in {time.time() - t0:.0f} s", flush=True)
    t0, t_log = time.time(), step
    while step < total:
        for group in opt.param_groups:  # cosine decay over both stages
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * step / total)))
        if step < steps[0]:
            pick = torch.randint(0, len(zs), (batch[0],), generator=gen)
            with torch.no_grad():
                target = _features(g, zs[pick])
                x = xs[pick].float() + 0.02 * torch.randn(xs[pick].shape, generator=gen)
            f = _features(g, enc(x.clamp(-1, 1)))
            loss = (f - target).square().mean() / target.square().mean()
        else:
            x = _renders(rng, batch[1])
            y = g(enc(x))
            coarse = F.avg_pool2d(y, 4) - F.avg_pool2d(x, 4)
            loss = (y - x).square().mean() + coarse.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            rate = (time.time() - t0) / (step - t_log)
            print(f"step {step} loss {loss.item():.4f} {rate:.2f} s/step", flush=True)
            t0, t_log = time.time(), step
        if step % save_every == 0 or step == total:
            state = {"enc": enc.state_dict(), "opt": opt.state_dict(), "step": step, "rng": rng,
                     "gen": gen.get_state()}  # fmt: skip
            torch.save(state, out / "ckpt.tmp")
            (out / "ckpt.tmp").replace(ckpt)
            half = {k: v.detach().half().contiguous() for k, v in enc.state_dict().items()}
            save_file(half, str(out / f"encoder_{step:06d}.safetensors"))
    half = {k: v.detach().half().contiguous() for k, v in enc.state_dict().items()}
    save_file(half, str(out / "encoder.safetensors"))
    print(f"saved {out / 'encoder.safetensors'}", flush=True)
    return enc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs") / "encoder")
    parser.add_argument("--steps", type=int, nargs=2, default=(1000, 700))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args.out, tuple(args.steps))


if __name__ == "__main__":
    main()
