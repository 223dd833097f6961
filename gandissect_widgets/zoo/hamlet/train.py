"""Retrain the hamlet models from scratch on CPU, seeds fixed.

Usage::

    python -m gandissect_widgets.zoo.hamlet.train gan [--steps N] [--out runs/gan]
    python -m gandissect_widgets.zoo.hamlet.train segmenter [--steps N] [--out runs/segmenter]
    python -m gandissect_widgets.zoo.hamlet.train classifier [--steps N] [--out runs/classifier]
        [--init WEIGHTS] [--batch B] [--lr LR]
    python -m gandissect_widgets.zoo.hamlet.train vit [--steps N] [--out runs/vit] --threads 1
        (the shipped weights: the default 6,000 steps)

Training data is rendered on the fly from seeds below ``TEST_SEED_START``; evaluation uses
seeds at or above it. The GAN checkpoints (and resumes from) ``OUT/ckpt.pt`` every few minutes
and writes ``OUT/ema_STEP.safetensors`` plus a 32-sample grid ``OUT/samples_STEP.png``.
The segmenter and classifier write ``OUT/<name>.safetensors`` at the end and
``OUT/<name>_STEP.safetensors`` every 500 steps; ``--init`` starts them from existing weights
(fine-tuning), ``--batch`` and ``--lr`` override the batch size and peak learning rate.
hamlet-vit checkpoints (and resumes from) ``OUT/ckpt.pt`` every 100 steps and writes
``OUT/vit.safetensors`` at the end.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..progan import ProgressiveGenerator
from .nets import GENERATOR_SIZES, Classifier, Discriminator, Segmenter, vit_classifier
from .world import CONCEPTS, TEST_SEED_START, render


def _batch(rng, n):
    """A batch of rendered training scenes as float tensors (and their labels)."""
    images, concepts, scenes = render(rng.integers(0, TEST_SEED_START, n))
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return x, torch.from_numpy(concepts), torch.from_numpy(scenes)


def _augment(x, gen):
    """Mild photometric jitter, blur and noise so the nets also read GAN outputs."""
    n = x.shape[0]
    gain = 1 + 0.15 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5)
    shift = 0.1 * (torch.rand(n, 3, 1, 1, generator=gen) - 0.5)
    x = x * gain + shift
    blur = torch.rand(n, 1, 1, 1, generator=gen) < 0.3
    kernel = torch.tensor([1.0, 2.0, 1.0]) / 4
    k2 = (kernel[:, None] * kernel[None, :]).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k2, groups=3)
    x = torch.where(blur, blurred, x)
    sigma = 0.06 * torch.rand(n, 1, 1, 1, generator=gen)
    return (x + sigma * torch.randn(x.shape, generator=gen)).clamp(-1, 1)


def save_grid(images, path, cols=8):
    """Save float images (N,3,H,W) in [-1,1] as one PNG grid (2x nearest upscale)."""
    from PIL import Image

    from ... import render

    grid = render.grid(render.to_uint8(images), columns=cols)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(path)


def _half_state(module):
    return {k: v.detach().half().contiguous() for k, v in module.state_dict().items()}


def train_gan(out, steps, batch=16, lr=2e-3, r1_gamma=1.0, r1_every=8, ckpt_every=300.0):
    """Non-saturating GAN loss, lazy R1, Adam(0, 0.99), EMA generator; resumes from ckpt.pt."""
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    g, d = ProgressiveGenerator(GENERATOR_SIZES), Discriminator()
    g_ema = copy.deepcopy(g).eval()
    g.output_64x64.clamp = torch.nn.Identity()  # no gradient cliff while training
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(d.parameters(), lr=lr, betas=(0.0, 0.99))
    step, rng = 0, np.random.default_rng(0)
    fixed_z = torch.randn(32, g.z_dim, generator=torch.Generator().manual_seed(1))
    ckpt = out / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        for name, obj in [("g", g), ("d", d), ("g_ema", g_ema), ("opt_g", opt_g), ("opt_d", opt_d)]:
            obj.load_state_dict(state[name])
        step, rng = state["step"], state["rng"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed at step {step}", flush=True)
    last_save, t0, t_log = time.time(), time.time(), step
    while step < steps:
        real, _, _ = _batch(rng, batch)
        z = torch.randn(batch, g.z_dim)
        # discriminator
        fake = g(z).detach()
        real.requires_grad_(step % r1_every == 0)
        d_real, d_fake = d(real), d(fake)
        loss_d = F.softplus(d_fake).mean() + F.softplus(-d_real).mean()
        if real.requires_grad:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss_d = loss_d + 0.5 * r1_gamma * r1_every * grad.pow(2).sum((1, 2, 3)).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator
        loss_g = F.softplus(-d(g(torch.randn(batch, g.z_dim)))).mean()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        step += 1
        beta = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(g_ema.parameters(), g.parameters(), strict=True):
                pe.lerp_(p, 1 - beta)
        if step % 50 == 0:
            rate = (time.time() - t0) / (step - t_log)
            print(f"step {step} loss_d {loss_d.item():.3f} loss_g {loss_g.item():.3f} "
                  f"{rate:.2f} s/step", flush=True)  # fmt: skip
            t0, t_log = time.time(), step
        if time.time() - last_save > ckpt_every or step == steps:
            state = {"g": g.state_dict(), "d": d.state_dict(), "g_ema": g_ema.state_dict(),
                     "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                     "rng": rng, "torch_rng": torch.get_rng_state()}  # fmt: skip
            torch.save(state, out / "ckpt.tmp")
            (out / "ckpt.tmp").replace(ckpt)
            save_file(_half_state(g_ema), str(out / f"ema_{step:06d}.safetensors"))
            with torch.no_grad():
                save_grid(g_ema(fixed_z), out / f"samples_{step:06d}.png")
            print(f"checkpoint at step {step}", flush=True)
            last_save = time.time()
    return g_ema


def _train_supervised(model, loss_fn, out, name, steps, batch, lr, init=None, save_every=500):
    """Shared loop for the segmenter and classifier: AdamW, one-cycle schedule, fresh scenes.

    ``init`` (a safetensors file) starts from existing weights; every ``save_every`` steps the
    weights so far are written to ``OUT/<name>_STEP.safetensors``.
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if init is not None:
        model.load_state_dict({k: v.float() for k, v in load_file(str(init)).items()})
    rng, gen = np.random.default_rng(1), torch.Generator().manual_seed(2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.1)
    model.train()
    t0 = time.time()
    for step in range(1, steps + 1):
        x, concepts, scenes = _batch(rng, batch)
        loss = loss_fn(model(_augment(x, gen)), concepts, scenes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} {(time.time() - t0) / step:.2f} s/step",
                  flush=True)  # fmt: skip
        if step % save_every == 0 and step < steps:
            save_file(_half_state(model), str(out / f"{name}_{step:06d}.safetensors"))
    model.eval()
    save_file(_half_state(model), str(out / f"{name}.safetensors"))
    print(f"saved {out / name}.safetensors after {time.time() - t0:.0f} s", flush=True)
    return model


def train_segmenter(out, steps, batch=24, lr=3e-3, init=None):
    """Per-pixel cross-entropy on rendered scenes with mild augmentation."""

    def loss_fn(logits, concepts, _):
        return F.cross_entropy(logits, concepts)

    model = Segmenter(CONCEPTS)
    return _train_supervised(model, loss_fn, out, "segmenter", steps, batch, lr, init)


def train_classifier(out, steps, batch=32, lr=3e-3, init=None):
    """Cross-entropy over scene types on rendered scenes with mild augmentation."""

    def loss_fn(logits, _, scenes):
        return F.cross_entropy(logits, scenes)

    return _train_supervised(Classifier(), loss_fn, out, "classifier", steps, batch, lr, init)


def train_vit(out, steps, batch=48, lr=1e-3, warmup=150, ckpt_every=100, init=None, seed=3):
    """hamlet-vit: AdamW, linear warm-up then cosine decay, fresh scenes; resumes from ckpt.pt.

    Every step draws its scenes and augmentation from seeds made of the step number, so a run
    cut anywhere and resumed from ``OUT/ckpt.pt`` (written every ``ckpt_every`` steps) gives the
    same weights as an uncut one. ``init`` (a safetensors file) starts from existing weights
    (fine-tuning; give it another ``seed`` so that it sees other scenes).
    """
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = vit_classifier()
    if init is not None:
        model.load_state_dict({k: v.float() for k, v in load_file(str(init)).items()})
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "pos_embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() > 1 and "pos_embed" not in n)]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": rest, "weight_decay": 0.0}], lr=lr
    )
    step, ckpt = 0, out / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step = int(state["step"])
        print(f"resumed at step {step}", flush=True)
    model.train()
    t0, t_log = time.time(), step
    while step < steps:
        rate = lr * min(1.0, (step + 1) / warmup)
        rate *= 0.5 * (1 + math.cos(math.pi * max(0, step - warmup) / max(1, steps - warmup)))
        for group in opt.param_groups:
            group["lr"] = rate
        x, _, scenes = _batch(np.random.default_rng([seed, step]), batch)
        x = _augment(x, torch.Generator().manual_seed(step))
        loss = F.cross_entropy(model(x), scenes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            took = (time.time() - t0) / (step - t_log)
            print(f"step {step} loss {loss.item():.4f} {took:.2f} s/step", flush=True)
        if step % ckpt_every == 0 or step == steps:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step},
                       out / "ckpt.tmp")  # fmt: skip
            (out / "ckpt.tmp").replace(ckpt)
    model.eval()
    save_file(_half_state(model), str(out / "vit.safetensors"))
    print(f"saved {out / 'vit.safetensors'}", flush=True)
    return model


_DEFAULT_STEPS = {"gan": 200_000, "segmenter": 1500, "classifier": 1500, "vit": 6000}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(_DEFAULT_STEPS))
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--init", type=Path, help="segmenter/classifier: start from these weights")
    parser.add_argument("--batch", type=int, help="segmenter/classifier: batch size")
    parser.add_argument("--lr", type=float, help="segmenter/classifier: peak learning rate")
    parser.add_argument("--seed", type=int, default=3, help="vit: seed of its scenes")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps = args.steps or _DEFAULT_STEPS[args.model]
    out = args.out or Path("runs") / args.model
    if args.model == "vit":
        extra = {k: v for k, v in [("batch", args.batch), ("lr", args.lr)] if v is not None}
        train_vit(out, steps, init=args.init, seed=args.seed, **extra)
        return
    if args.model == "gan":
        if args.init or args.batch or args.lr:
            parser.error("--init, --batch and --lr apply to the segmenter and classifier")
        train_gan(out, steps)
        return
    train = {"segmenter": train_segmenter, "classifier": train_classifier}[args.model]
    extra = {k: v for k, v in [("batch", args.batch), ("lr", args.lr)] if v is not None}
    train(out, steps, init=args.init, **extra)


if __name__ == "__main__":
    main()
