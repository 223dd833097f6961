"""Write the tutorial notebooks from the cell sources below, then run them top to bottom.

    python notebooks/_build.py            # write and execute all six
    python notebooks/_build.py 02         # only those whose name contains "02"

Cells that start with ``# check`` hold assertions on real results; nbval re-runs every cell in
``make test``, so a notebook that rots fails the suite:

    .venv/bin/pytest notebooks/*.ipynb --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg

Anything slower than ~2 s shows progress (``progress=True``, ``tqdm.auto``); sanitize.cfg keeps
nbval from comparing progress output. Every widget output is saved with its static picture
(``image/png``, see ``widgets/_fallback.py``) and without widget state, so the shipped notebooks
show pictures on GitHub, nbviewer and before they are run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).parent
SETUP = "import gandissect_widgets as gw\nimport matplotlib.pyplot as plt\nimport numpy as np\n"


def md(text):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text):
    return nbformat.v4.new_code_cell(text.strip())


NOTEBOOKS: dict[str, list] = {}


def notebook(name):
    def register(fn):
        NOTEBOOKS[name] = fn
        return fn

    return register


@notebook("01_explore_units")
def _explore():
    return [
        md("""
# 1 · What do single units of a GAN draw?

Welcome to **hamlet**: a tiny procedural world of villages, lakes, mountains and forests, and a
GAN that learned to paint it. Everything here runs on a laptop CPU in seconds, with no download.

Following *GAN Dissection* (Bau et al., ICLR 2019), we look at each **unit** (channel) of one
layer, find where it fires, and compare that region with a segmentation of the image: a unit
whose top activations overlap the trees, image after image, is a **tree unit**.
"""),
        code(SETUP),
        code("""
session = gw.Session.from_zoo("hamlet")   # generator + segmenter, on CPU or GPU
session
"""),
        md("A few samples from the generator (seeds 0-15), and the real rendered scenes it learned from:"),
        code("""
gw.ImageGrid(session.generate(range(16)), columns=8, size=80)
"""),
        code("""
real_images, concept_maps, scene_ids = gw.zoo.hamlet.render(range(8))
gw.ImageGrid(real_images, columns=8, size=80, captions=[gw.zoo.hamlet.SCENES[i] for i in scene_ids])
"""),
        md("""
## Dissect a layer

`session.dissect` runs the generator over `n` samples, segments every image, and for each unit
computes the IoU between "activation above its top-1% level" and every concept. Results are
cached on disk, keyed by the model's weights and edits.
"""),
        code("""
LAYER = "layer6"
dissection = session.dissect(LAYER, n=400, progress=True)
dissection
"""),
        code("""
fig = dissection.plot_summary()
"""),
        code("""
rows = sorted(dissection.table(), key=lambda r: -r["iou"])
for r in rows[:8]:
    print(f"unit {r['unit']:3d}  {r['label']:<8s} IoU {r['iou']:.2f}")
"""),
        code("""
# check: as in the paper, many units are interpretable, for many different concepts
summary = dissection.summary()
print(f"{len(dissection.interpretable())} of {len(dissection.labels)} units interpretable:", summary)
assert len(dissection.interpretable()) >= 0.2 * len(dissection.labels)
assert len(summary) >= 5
"""),
        md("""
## Browse the units

Pick a unit on the left (arrow keys step through the list): its heatmap over eight samples, and
the samples where it fires most across the whole dissection set. It opens on the best unit that
fires somewhere on these eight samples (the very best may have nothing to fire on in them).
"""),
        code("""
browser = gw.UnitBrowser(session, LAYER)
browser
"""),
        code("""
# check: units listed by IoU; the browser starts on the best one that fires on these samples
browser.wait()                      # it renders in the background; wait before reading it
assert browser.order == dissection.best_iou.argsort(descending=True).tolist()
assert browser.unit in browser.order[:3] and "below it on all" not in browser.info
assert browser.samples_grid.heatmaps.shape == (8, 16, 16)
"""),
        md("Next: **02_ablation** switches these units off and measures what disappears."),
    ]


@notebook("02_ablation")
def _ablation():
    return [
        md("""
# 2 · Remove the trees: ablating units

If a unit really *draws* trees, switching it off should remove trees from the picture.
Bau et al. found that ablating the 20 best tree units of a scene GAN removes about half of the
tree pixels. Let's try it on hamlet.
"""),
        code(SETUP),
        code("""
session = gw.Session.from_zoo("hamlet")
LAYER = "layer6"
dissection = session.dissect(LAYER, n=400, progress=True)
trees = dissection.ranked_for("tree")[:20]
print("best tree units:", trees[:10])
"""),
        md("""
## The panel

Choose units by concept (or type numbers), drag the strength, switch between *remove* and
*insert* (insert sets the units to their high level, like GANPaint's brush), or restrict the
edit to a painted region.

The panel only **previews** its edit on its own samples: the Session, and every other widget and
cell, still see the original generator until you press **Apply** (or call `panel.apply()`).
"""),
        code("""
panel = gw.AblationPanel(session, LAYER, units=trees[:10])
panel
"""),
        code("""
# check: constructing the panel changed nothing; apply() pushes its edit, undo() takes it back
panel.wait()
assert session.edits == [] and not panel.applied
edit = panel.apply()                  # the same as pressing Apply
print("applied:", session.edits)
assert session.edits == [edit] and panel.applied
session.undo()                        # from code (or Undo anywhere): the panel notices
panel.wait()
print("after undo:", session.edits, "· panel applied:", panel.applied)
assert session.edits == [] and not panel.applied
"""),
        md("""
## How many units does it take?

`ablation_effect` counts the concept's pixels with and without the edit (with the segmenter).
Its `removed` is a *net* figure: tree pixels that disappear, minus pixels that become tree
where there was none. We measure both on 100 samples:
"""),
        code("""
from tqdm.auto import tqdm

TREE = session.segmenter.concepts.index("tree")
SEEDS = range(100)
seg_before = np.asarray(session.segmenter.segment(session.generate(SEEDS)))
tree_before = seg_before == TREE
counts = [1, 2, 5, 10, 15, 20]
gone, new = [], []
for k in tqdm(counts, desc="ablate"):
    with session.temporarily(session.ablation(LAYER, trees[:k])):
        seg = np.asarray(session.segmenter.segment(session.generate(SEEDS)))
    tree_after = seg == TREE
    gone.append((tree_before & ~tree_after).sum() / tree_before.sum())
    new.append((~tree_before & tree_after).sum() / tree_before.sum())
was = np.bincount(seg_before[~tree_before & tree_after], minlength=len(session.segmenter.concepts))
removed = [g - n for g, n in zip(gone, new)]   # = ablation_effect(...).removed
fig, ax = plt.subplots(figsize=(5.5, 3))
ax.plot(counts, [100 * r for r in removed], "o-", color="#2e7d32", label="net removed")
ax.plot(counts, [100 * g for g in gone], "s--", color="#555", label="trees gone")
ax.plot(counts, [100 * n for n in new], "^:", color="#c62828", label="new tree pixels")
ax.set_xlabel("tree units ablated"); ax.set_ylabel("% of the tree pixels")
ax.set_ylim(0, 100); ax.grid(alpha=0.3)
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
fig.tight_layout()
"""),
        code("""
table = {r["unit"]: r for r in dissection.table()}
tree_iou = dissection.iou[:, dissection.concepts.index("tree")]
for k, u in enumerate(trees, 1):
    print(f"#{k:2d} unit {u:2d}: tree IoU {float(tree_iou[u]):.2f}, labelled {table[u]['label']}")
share = {c: n / was.sum() for c, n in zip(session.segmenter.concepts, was) if n}
print(f"with {counts[-1]} units, the new tree pixels were:",
      ", ".join(f"{c} {v:.0%}" for c, v in sorted(share.items(), key=lambda kv: -kv[1])[:4]))
"""),
        md("""
Why can 20 units remove fewer trees than 10? The trees themselves stay gone (the dashed line
is flat near the top); what grows is the red line. `ranked_for("tree")` sorts *every* unit by
its tree IoU, and past the first handful the IoUs are small and the units are labelled road,
wall, roof, mountain or cloud. Switching those off changes other parts of the scene too: as the
last line shows, the new tree pixels were mostly grass and road before, regions the ablated
generator now paints so that the segmenter reads them as tree. So the net figure falls although
no more trees survive. The best handful of units does the work; more units add side effects.
"""),
        code("""
effect = session.ablation_effect(LAYER, trees, "tree", n=200)
print(f"{effect.removed:.0%} of tree pixels removed; other concepts' total area changed "
      f"{effect.others_changed():.0%}")
"""),
        code("""
# check: removing the tree units removes trees, and much less of everything else; the trees
# stay gone as more units are added, and what the extra units add is new tree pixels elsewhere
assert effect.removed > 0.5
assert effect.others_changed() < effect.removed / 4
assert removed[-1] > removed[0] and min(gone[3:]) > 0.9
assert max(share, key=share.get) in ("grass", "road")
assert abs(removed[-1] - session.ablation_effect(LAYER, trees, "tree", n=100).removed) < 1e-6
"""),
        code("""
before = session.generate(range(8))
with session.temporarily(session.ablation(LAYER, trees)):
    after = session.generate(range(8))
gw.ImageGrid(np.concatenate([before, after]), columns=8, size=80,
             captions=["original"] * 8 + ["trees ablated"] * 8)
"""),
    ]


@notebook("03_rewriting")
def _rewriting():
    return [
        md("""
# 3 · Rewrite a rule of the generator

*Rewriting a Deep Generative Model* (Bau et al., ECCV 2020): copy an object from one image,
paste it where it should go in another, mark a few **context** examples of where the new rule
applies, and one rank-one change to one layer's weights makes the generator follow the new rule
**everywhere** — also on images nobody painted.
"""),
        code(SETUP),
        code("""
session = gw.Session.from_zoo("hamlet")
rule = gw.zoo.hamlet.example_rule(session)   # seeds and masks picked by the segmenter
req = rule["request"]
print(f"rule: every {rule['source_concept']} gets a {rule['target_concept']}  (layer {rule['layer']})")
"""),
        md("The request, as you would paint it in the `RuleEditor` below: what to copy, where to paste it, and the context."),
        code("""
copy_seed, copy_mask = req["copy"]
paste_seed, (y, x) = req["paste"]                 # paste: the copy's centre goes to (y, x)
paste_mask = np.zeros_like(copy_mask)
paste_mask[max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4] = 1
context_seeds = [seed for seed, _ in req["context"]]
shown = [copy_seed, paste_seed, *context_seeds]
masks = [copy_mask, paste_mask, *[m for _, m in req["context"]]]
gw.ImageGrid(session.generate(shown), heatmaps=np.stack(masks).astype(float), opacity=0.45, size=96,
             captions=["copy", "paste here"] + ["context"] * len(context_seeds))
"""),
        code("""
from tqdm.auto import tqdm

STEPS = 400   # the default
with tqdm(total=STEPS, desc="rewrite") as bar:
    def progress(step, loss):
        bar.update(min(step, STEPS) - bar.n); bar.set_postfix(loss=f"{loss:.3f}")
    edit = session.rewrite(rule["layer"], **req, steps=STEPS, progress=progress)
    bar.update(STEPS - bar.n)
print(edit, f"· final loss {edit.losses[-1]:.3f} · {edit.seconds:.1f} s")
"""),
        md("""
Samples that nobody painted, before and after the edit. The rule was picked among seeds 0-199;
these come from 1000-1099, and we pick the eight with the most roof (by the segmenter, on the
original generator), since the rule only acts where there is a roof.
"""),
        code("""
POOL = list(range(1000, 1100))
ROOF = session.segmenter.concepts.index(rule["source_concept"])
TREE = session.segmenter.concepts.index(rule["target_concept"])
with session.excluding(edit):
    roof_pixels = (np.asarray(session.segmenter.segment(session.generate(POOL))) == ROOF).sum((1, 2))
    seeds = [POOL[i] for i in np.argsort(-roof_pixels, kind="stable")[:8]]
    original = session.generate(seeds)
changed = session.generate(seeds)
gw.ImageGrid(np.concatenate([original, changed]), columns=8, size=80,
             captions=[f"seed {s}" for s in seeds] + ["rewritten"] * 8)
"""),
        code("""
# check: these samples have roofs, and the rewrite turns most of their roof pixels into trees
seg_before = np.asarray(session.segmenter.segment(original))
seg_after = np.asarray(session.segmenter.segment(changed))
roofs = seg_before == ROOF
print(f"{roofs.sum()} roof pixels in the original eight; {(seg_after[roofs] == TREE).mean():.0%} became tree")
assert all(roof_pixels[POOL.index(s)] > 50 for s in seeds)
assert (seg_after[roofs] == TREE).mean() > 0.5
"""),
        code("""
UNSEEN = range(1000, 1100)   # the rule's copy, paste and context samples all come from seeds 0-199
scores = gw.rewrite_eval(session, edit, rule["source_concept"], rule["target_concept"], seeds=UNSEEN)
print(f"{scores['with_source']} of {scores['n']} unseen samples show a {rule['source_concept']}")
print(f"success {scores['success']:.0%}: {rule['source_concept']} pixels that became {rule['target_concept']}")
print(f"mean pixel change on samples without any {rule['source_concept']}: {scores['change_without_source']:.1%}")
"""),
        code("""
# check: the rule generalises to samples it never saw and leaves the rest of the world alone
assert not set(UNSEEN) & {copy_seed, paste_seed, *context_seeds} and min(UNSEEN) >= 200
assert scores["n"] == 100 and scores["with_source"] >= 20
assert scores["success"] > 0.5
assert scores["change_without_source"] < 0.02
"""),
        md("""
## Undo, save, load

The rewrite is an edit on the Session's stack like an ablation: `undo()` restores the weights
bit for bit, and a saved edit is a small file that re-applies without re-optimising.
"""),
        code("""
import os, tempfile
path = edit.save(os.path.join(tempfile.mkdtemp(), "rule.npz"))
session.undo()
assert np.array_equal(session.generate(seeds), original)      # bit-exact undo
session.push(gw.load_edit(path))
assert np.array_equal(session.generate(seeds), changed)       # same rule, no optimisation
print(f"{os.path.getsize(path) / 1024:.0f} KB on disk")
"""),
        md("""
## Your turn: the RuleEditor

Pick a sample, paint a region and press **Copy**; click **Paste** and then the spot in another
sample; paint a few context regions with **Add to context**; **Execute**. Toggle
**Original / Changed** to compare, **Undo** to take it back.
"""),
        code("""
session.undo()
gw.RuleEditor(session, rule["layer"])
"""),
    ]


@notebook("04_classifier_dissection")
def _classifier():
    return [
        md("""
# 4 · Network Dissection of a scene classifier

The same question for a classifier (*Network Dissection*, Bau et al., CVPR 2017 / PNAS 2020):
which units of a scene classifier detect which concepts, and which units does each scene class
rely on? hamlet's renderer gives the exact concept map of every image, so no segmenter is
needed: the IoUs are measured against the truth.
"""),
        code(SETUP),
        code("""
session = gw.Session.from_zoo("hamlet-classifier")
print(session.classes)
images, maps, labels = gw.zoo.hamlet.render(range(8))
gw.ImageGrid(images, columns=8, size=80, captions=[session.classes[i] for i in labels])
"""),
        code("""
LAYER = "conv4"
dissection = session.dissect(LAYER, n=300, progress=True)
fig = dissection.plot_summary()
"""),
        code("""
gw.UnitBrowser(session, LAYER)
"""),
        md("""
## Which units does a class need?

Rank units by how much they support one class (activation × gradient, on one sample set), then
ablate the top ones and measure accuracy per class on **another** sample set.
"""),
        code("""
HELD_OUT = range(gw.zoo.hamlet.TEST_SEED_START, gw.zoo.hamlet.TEST_SEED_START + 300)
from tqdm.auto import tqdm

drops = {}
for name in tqdm(session.classes, desc="classes"):
    units = session.class_units(LAYER, name, n=200)[:20]     # ranked on seeds 0-199
    change = session.ablation_accuracy(LAYER, units, seeds=HELD_OUT)
    drops[name] = (change.before[name] - change.after[name], change.others_drop(name))  # in points
    print(f"{name:<10s} accuracy {change.before[name]:.0%} -> {change.after[name]:.0%};"
          f" other classes {-100 * change.others_drop(name):+.1f} points")
"""),
        code("""
fig, ax = plt.subplots(figsize=(6, 3))
x = np.arange(len(drops))
ax.bar(x - 0.2, [100 * d[0] for d in drops.values()], 0.4, label="the class itself")
ax.bar(x + 0.2, [100 * d[1] for d in drops.values()], 0.4, label="other classes (mean)")
ax.set_xticks(x, list(drops)); ax.set_ylabel("accuracy drop (points)")
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # beside the bars, not on them
fig.tight_layout()
"""),
        code("""
# check: each class's own top units cost it at least half its accuracy (in points), and at least
# 40 points more than they cost the other classes on average (~60 held-out scenes per class)
for name, (own, others) in drops.items():
    assert own >= 0.5 and own - others >= 0.4, (name, own, others)
"""),
    ]


@notebook("05_your_own_model")
def _own():
    return [
        md("""
# 5 · Your own model

Any PyTorch generator (latents → images in [-1, 1]) or classifier (images → logits) works.
Layers are found from the module tree; any module path can be named.

The generator below is untrained. A freshly initialised network (PyTorch's default init) has
tiny outputs, and `tanh` of almost 0 is mid-grey: every image would be flat grey. He (Kaiming)
initialisation keeps the signal's size through the ReLUs, bilinear upsampling keeps it smooth,
and a larger last layer spreads the colours, so there is something to see and to ablate. Use your
trained model in its place.
"""),
        code(SETUP + "import torch\nfrom torch import nn"),
        code("""
class MyGenerator(nn.Module):
    z_dim = 32  # the Session reads the latent size from here (or pass z_dim=)

    def __init__(self):
        super().__init__()
        up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.block1 = nn.Sequential(nn.ConvTranspose2d(32, 64, 4), nn.ReLU())               # 4x4
        self.block2 = nn.Sequential(up, nn.Conv2d(64, 32, 3, padding=1), nn.ReLU())          # 8x8
        self.block3 = nn.Sequential(up, nn.Conv2d(32, 16, 3, padding=1), nn.ReLU())          # 16x16
        self.to_rgb = nn.Sequential(up, nn.Conv2d(16, 3, 1), nn.Tanh())                      # 32x32
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        self.to_rgb[1].weight.data *= 3

    def forward(self, z):
        return self.to_rgb(self.block3(self.block2(self.block1(z[:, :, None, None]))))

torch.manual_seed(0)
mine = gw.Session(MyGenerator())
mine.layers, mine.layer_shape("block2")
"""),
        code("""
original = mine.generate(range(4))
mine.ablate("block2", range(16))          # switch off units 0-15 of block2
ablated = mine.generate(range(4))
mine.undo()
gw.ImageGrid(np.concatenate([original, ablated]), columns=4, size=96,
             captions=["original"] * 4 + ["units 0-15 off"] * 4)
"""),
        code("""
# check: the images are not flat grey, and switching units off visibly changes them
print(f"colour spread within an image: {original.reshape(4, -1, 3).std(1).mean():.0f} (of 255); "
      f"mean change from the ablation: {np.abs(ablated.astype(int) - original).mean():.0f}")
assert original.reshape(4, -1, 3).std(1).mean() > 15
assert np.abs(ablated.astype(int) - original).mean() > 5
"""),
        code("""
# check: undo restores the images bit for bit
first = mine.generate(range(4))
mine.redo(); mine.undo()
assert np.array_equal(mine.generate(range(4)), first)
"""),
        md("""
## A segmenter

Dissection needs concept maps. A segmenter is any object with `concepts` (names) and
`segment(images)` → integer map (N, H, W). Here, a toy one that calls bright pixels "sky":
"""),
        code("""
class BrightIsSky:
    concepts = ["ground", "sky"]

    def segment(self, images):
        return torch.from_numpy((images.mean(-1) > 127).astype("int64"))

d = mine.dissect("block2", n=64, segmenter=BrightIsSky(), cache=False)
d.table()[:3]
"""),
        md("""
## A classifier

A classifier takes images (N, 3, H, W) in [-1, 1] and returns logits. Its samples come from a
`data` function: integer ids → uint8 pictures (N, H, W, 3), or → `(pictures, concept_maps,
labels)` when you have them (concept maps of ids into `concepts` give exact Network Dissection;
labels let `ablation_accuracy` measure what removing units costs each class). Here hamlet's
classifier and its scenes stand in for your network and your dataset:
"""),
        code("""
from gandissect_widgets.zoo import hamlet

net = gw.zoo.load_classifier("hamlet")   # your trained classifier in its place

def my_data(ids):                        # your dataset, keyed by integer ids
    return hamlet.render(ids)            # pictures, concept maps, labels

scenes = gw.Session(net, data=my_data, classes=list(hamlet.SCENES), concepts=list(hamlet.CONCEPTS))
predicted = scenes.classify(range(64)).argmax(1)
_, _, labels = my_data(range(64))
print(f"layers: {scenes.layers}")
print(f"accuracy on 64 of your pictures: {(predicted == labels).float().mean():.0%}")
scenes.dissect("conv4", n=200, cache=False).table()[:3]
"""),
        code("""
# check: the wrapped classifier classifies, and its layers can be dissected like a generator's
assert scenes.kind == "classifier" and (predicted == labels).float().mean() > 0.85
"""),
        md("""
## Real checkpoints

`gw.zoo.load(path)` loads a published checkpoint from disk, detecting its layout: Progressive
GAN (the PyTorch conversions used by GAN Dissection), StyleGAN2 (rosinality's `g_ema` format),
torchvision VGG16 / ResNet (e.g. Places365 weights). Catalogue names such as
`"progan-church"` download once into `~/.cache/gandissect-widgets` (with a clear error, and
where to put the file by hand, when you are offline). On a GPU machine, `Session(..., device="auto")`
picks CUDA.

```python
session = gw.Session(gw.zoo.load("progan-church"), segmenter=my_segmenter, device="auto")
session.dissect("layer4", n=2000)
```

Here is the same path offline: a Progressive GAN with random weights, saved in the published
layout, loaded back by path:
"""),
        code("""
import os, tempfile
from gandissect_widgets.zoo.progan import ProgressiveGenerator

random_progan = ProgressiveGenerator([64, 64, 64, 32, 16])      # z, then channels at 4..32 px
path = os.path.join(tempfile.mkdtemp(), "my_progan.pth")
torch.save(random_progan.state_dict(), path)                    # layer1.conv.weight, layer1.wscale.b, ...
progan = gw.Session(gw.zoo.load(path))
progan.layers, progan.image_size
"""),
        code("""
# check: the checkpoint's layout was detected and its layers are the ProGAN ones
assert progan.layers[:3] == ["layer1", "layer2", "layer3"] and progan.image_size == (32, 32)
"""),
    ]


@notebook("06_your_own_photo")
def _photo():
    return [
        md("""
# 6 · Edit your own photo

The units we found in tutorials 1-3 act on pictures the GAN *generates*. To edit a picture it
never produced, we first **invert** it, GANPaint style: find a latent whose image is close to
the picture, then fit a small per-image correction of layer5's features, so that the units of
layer6 (the ones that draw trees and roofs) still draw the picture themselves. The photo then
gets a sample id that `generate`, `ablate`, `rewrite`, `dissect` and every widget take like a
seed.
"""),
        code(SETUP),
        code("""
session = gw.Session.from_zoo("hamlet")
hamlet = gw.zoo.hamlet
"""),
        md("""
## Two photos

Our "photos" are pictures of the hamlet world itself, from the held-out seeds the GAN never saw
(`TEST_SEED_START` on): a wooded village and one with big roofs. With your own picture, load a
uint8 (H, W, 3) array instead (it is cropped and resized to 64 x 64), e.g.
`np.asarray(PIL.Image.open("my.png").convert("RGB"))`, or drop it on a widget (last section).
"""),
        code("""
pictures, true_maps, _ = hamlet.render([hamlet.TEST_SEED_START + 3, hamlet.TEST_SEED_START + 11])
gw.ImageGrid(pictures, size=192, captions=["wooded", "big roofs"])
"""),
        md("""
## Invert them

hamlet ships an **encoder** that guesses the latent from the picture in milliseconds; the fit
starts from that guess and refines it in 300 steps, some 4 s of one CPU core per picture
(`progress=True` shows a bar; `background=True` returns a Job you can cancel; `steps=` trades
time for fidelity; `encoder=None` fits from random latents instead, as for a generator without
an encoder: 800 steps from 32 random starts, some 50 s).
"""),
        code("""
ids = session.invert(pictures, progress=True)
reconstruction = session.generate(ids)
err = (pictures.astype(float) - reconstruction) ** 2
psnr = 10 * np.log10(255**2 / err.mean(axis=(1, 2, 3)))
print(f"photo sample ids {ids} · reconstruction PSNR {psnr.round(1)} dB")
gw.ImageGrid(np.concatenate([pictures, reconstruction]), columns=2, size=192,
             captions=["wooded", "big roofs", "its inversion", "its inversion"])
"""),
        code("""
# check: the inversions are faithful, and the segmenter sees the same trees and roofs
C = session.segmenter.concepts
TREE, ROOF = C.index("tree"), C.index("roof")
seg = np.asarray(session.segmenter.segment(reconstruction))
truth = np.asarray(true_maps)
for name, k in (("tree", TREE), ("roof", ROOF)):
    iou = ((seg == k) & (truth == k)).sum() / ((seg == k) | (truth == k)).sum()
    print(f"{name}: {(truth == k).sum()} pixels in the photos, IoU with the inversions' {iou:.2f}")
    assert iou > 0.6
assert psnr.min() > 24
"""),
        md("""
## The units that draw its trees

Dissect layer6 on generated samples (cached after tutorial 1) and take the ten units that
match trees best, as in tutorial 2. Then switch them off **on the photos**:
"""),
        code("""
LAYER = "layer6"
dissection = session.dissect(LAYER, n=400, progress=True)
trees = dissection.ranked_for("tree")[:10]
with session.temporarily(session.ablation(LAYER, trees)):
    no_trees = session.generate(ids)
gw.ImageGrid(np.concatenate([reconstruction, no_trees]), columns=2, size=192,
             captions=["inverted", "inverted", "10 tree units off", "10 tree units off"])
"""),
        code("""
# check: the wooded photo loses its trees
after = np.asarray(session.segmenter.segment(no_trees))
before_n, after_n = (seg[0] == TREE).sum(), (after[0] == TREE).sum()
print(f"tree pixels {before_n} -> {after_n} ({1 - after_n / before_n:.0%} removed)")
assert after_n < 0.25 * before_n
"""),
        md("""
The photo's correction was fitted to layer5, which *feeds* these units, so they draw the
photo's trees themselves. It does not always go this well: on 50 held-out pictures the top
three tree units remove 70% of the tree pixels (80% on generated samples), some pictures
losing all of them and some almost none (BENCHMARKS.md, "Photo inversion"). Try the
`AblationPanel` on the photos: `gw.AblationPanel(session, LAYER, units=trees, seeds=ids)`.

## A tree on its roof

Rewriting changes the generator's *rule*, so it reaches the photos too. Tutorial 3's example
rule (copy a tree from one generated sample, paste it on a roof, with a few roofs as context)
was made on generated samples only; apply it and look at the photos:
"""),
        code("""
rule = hamlet.example_rule(session)
edit = session.rewrite(rule["layer"], **rule["request"])
roof_trees = session.generate(ids)
gw.ImageGrid(np.concatenate([reconstruction, roof_trees]), columns=2, size=192,
             captions=["inverted", "inverted", "trees on roofs", "trees on roofs"])
"""),
        code("""
# check: about half of the big roofs now show a tree; undo restores the photos bit for bit
changed = np.asarray(session.segmenter.segment(roof_trees))
share = (changed[1][seg[1] == ROOF] == TREE).mean()
print(f"{(seg[1] == ROOF).sum()} roof pixels; {share:.0%} became tree")
assert share > 0.4
session.undo()
assert np.array_equal(session.generate(ids), reconstruction)
"""),
        md("""
On 50 held-out pictures 54% of the roof pixels turn to tree (86% on generated samples), but
it varies from picture to picture (50% on this one). The closer the latent
alone comes to the picture (the encoder's guess helps), the more of the roofs the generator's
own units draw, and the rule reaches those.
"""),
        md("""
A rule can also be made on the photo itself: photo ids go wherever a seed goes, e.g. copy the
example's tree, paste it at the middle of the photo's roof and give the photo's roof as context:

```python
ys, xs = np.nonzero(seg[1] == ROOF)                       # the photo's roof pixels
y, x = int(ys.mean()), int(xs.mean())                     # their middle
session.rewrite("layer6", copy=rule["request"]["copy"], paste=(ids[1], (y, x)),
                context=[(ids[1], seg[1] == ROOF)])
```

## Drop your own photo on a widget

Widgets take photos too: drop a PNG or JPEG onto the samples below (or press **add photo…**).
It is inverted in the background, with a progress line and a cancel button: the encoder's
guess shows within a second as "preview" in every widget of this session, sharpens twice a
second as the fit goes on, and the finished photo takes its place in `session.samples` as
"photo 2". Ours are already there:
"""),
        code("""
session.add_samples(ids)
gw.UnitBrowser(session, LAYER, columns=5, size=96)
"""),
    ]


@notebook("07_fool_the_classifier")
def _fool():
    return [
        md("""
# 7 · Steer, fool and probe a classifier through its units

*Understanding the role of individual units in a deep neural network* (Bau et al., PNAS 2020)
makes three claims about a scene classifier: zero a class's units and the class is lost; raise
a few units of another class and the classifier sees that class; and an imperceptible attack
works through a few key units. We check all three on the hamlet scene classifier, on held-out
scenes, then draw on a picture and watch the classifier change its mind.
"""),
        code(SETUP),
        code("""
session = gw.Session.from_zoo("hamlet-classifier")
LAYER = "conv4"
hamlet = gw.zoo.hamlet
HELD_OUT = range(hamlet.TEST_SEED_START, hamlet.TEST_SEED_START + 200)
print(session.classes)
"""),
        md("""
## 1. Zero the village units: the class is lost

`class_units` ranks a layer's units by how much they support a class (activation × gradient,
on seeds 0-199); we remove the top 20 and measure accuracy per class on held-out scenes.
"""),
        code("""
village_units = session.class_units(LAYER, "village", n=200)[:20]
change = session.ablation_accuracy(LAYER, village_units, seeds=HELD_OUT)
village_drop = change.drop("village")
print(f"village accuracy {change.before['village']:.0%} -> {change.after['village']:.0%};"
      f" other classes {-100 * change.others_drop('village'):+.1f} points")
"""),
        code("""
# check: the village is lost, the other classes mostly stay
assert village_drop >= 0.8, village_drop
"""),
        md("""
## 2. Steer a lake into a forest

`session.steer(layer, target, k, value)` sets the target class's top `k` units to `value` times
their "high" level (their 0.99 quantile) everywhere on the map: an ordinary edit on the
Session's stack (undo, preview, every widget sees it). `steering_curve` measures, on the
held-out scenes of every *other* class, how often the prediction becomes the target.
"""),
        code("""
curve = gw.steering.steering_curve(session, LAYER, "forest", ks=[1, 3, 5, 10], value=2,
                                   seeds=HELD_OUT)
flip = {k: e.flip_rate for k, e in curve.items()}
print(curve[10].table())
fig, ax = plt.subplots(figsize=(4, 2.5))
ax.plot(list(flip), [100 * v for v in flip.values()], "o-")
ax.set_xlabel("units set to 2x high"); ax.set_ylabel("scenes now 'forest' (%)")
fig.tight_layout()
"""),
        code("""
LAKE, FOREST, MEADOW = (session.classes.index(c) for c in ("lake", "forest", "meadow"))
lakes = [s for s, lab in zip(HELD_OUT, session.labels(HELD_OUT).tolist()) if lab == LAKE][:8]
edit = session.steer(LAYER, "forest", k=10, value=2)
steered = session.classify(lakes).argmax(1)
session.undo()
print(edit.describe(), "->", [session.classes[i] for i in steered])
# the pictures do not change: steering changes what the classifier's units say about them
gw.ImageGrid(session.generate(lakes), size=80,
             captions=[f"seen as {session.classes[i]}" for i in steered])
"""),
        code("""
# check: 10 units flip at least 90% of the other classes' scenes, lakes included
forest_all, forest_from_lake = curve[10].flip_rate, curve[10].by_source["lake"]
assert forest_all >= 0.9 and forest_from_lake >= 0.9, (forest_all, forest_from_lake)
"""),
        md("""
## 3. Fool it through a few units

`session.attack` takes projected gradient steps inside a box of `eps` around each picture.
With `layer` and `units` the loss is on those units only (raise the forest units, lower the
lake units), never on the logits: the classifier flips by itself. The result is judged on the
pictures rounded to uint8, pictures you could save. hamlet's classifier was trained with noise
up to 0.06, so it resists small boxes: 2 levels of 255 flip about 5% of scenes, 8 levels
about half (BENCHMARKS.md); we use 16 levels (PSNR about 25-30 dB: visible if you look).
"""),
        code("""
units = gw.attacks.unit_targets(session, LAYER, "forest", source="lake", k=10)
attack = session.attack(lakes, "forest", eps=16 / 255, layer=LAYER, units=units)
unit_flip = attack.flip_rate
print(f"{unit_flip:.0%} of the lakes are now 'forest'; PSNR >= {attack.psnr.min():.1f} dB")
shown = slice(0, 4)  # the first four: before, after (with its class), the change magnified
gw.ImageGrid(np.concatenate([attack.originals[shown], attack.images[shown],
                             attack.magnified()[shown]]), columns=4, size=64,
             captions=["before"] * 4 + [session.classes[i] for i in attack.after[shown]]
             + ["perturbation"] * 4)
"""),
        code("""
# check: the unit attack flips most lakes, every picture stays within 16 levels
assert unit_flip >= 0.75 and np.abs(attack.perturbation).max() <= 16, unit_flip
"""),
        md("""
## 4. Where does a plain pixel attack act?

A class-targeted attack knows nothing of units. Yet the 10 units of conv4 it moves most (each
over its own "high" level) are among the top 20 units of the source or the target class about
twice as often as random units are (PNAS reports more; with 2 x 20 of 128 units, 3x would need
90% of the moved units to be the classes' own: BENCHMARKS.md has the figure on more scenes).
"""),
        code("""
where = gw.attack_units(session, LAYER, list(HELD_OUT)[:8], eps=8 / 255)
ratio = where.ratio
print(where.table())
print(f"{where.overlap:.0%} of the moved units are the classes' own, vs {where.random:.0%} "
      "for random units")
"""),
        code("""
# check: the moved units are the classes' own units more often than random ones
assert ratio >= 1.5, ratio
"""),
        md("""
## 5. Draw a tree

`ClassifierProbe` shows one picture, the class probabilities, the units that carry the
prediction (heatmaps) and steering and attack controls. Paint on the picture (here from code:
a green crown over a meadow) and the forest probability rises.
"""),
        code("""
meadow = [s for s, lab in zip(HELD_OUT, session.labels(HELD_OUT).tolist()) if lab == MEADOW][0]
probe = gw.ClassifierProbe(session, LAYER, sample=meadow)
probe.wait()
forest_before = probe.probs[FOREST]
crown = np.zeros((64, 64)); yy, xx = np.mgrid[:64, :64]
crown[(yy - 38) ** 2 + (xx - 20) ** 2 < 100] = 1
probe.canvas.mask = crown
probe.wait()
forest_after = probe.probs[FOREST]
print(f"forest {forest_before:.0%} -> {forest_after:.0%}")
probe
"""),
        code("""
# check: the sketched tree raises the forest probability
assert forest_after >= forest_before + 0.3, (forest_before, forest_after)
"""),
    ]


@notebook("08_transformers")
def _transformers():
    return [
        md("""
# 8 · Inside a vision transformer

Most image models studied today are vision transformers (ViT, DeiT, DINOv2, CLIP's image
tower). Their layers do not output maps (N, C, H, W) but **token sequences** (N, T, C): a class
token, then one token per image patch, row by row. Do their units detect single concepts, as a
CNN's do (*Network Dissection*, Bau et al., PNAS 2020)? And at which depth?

**hamlet-vit** learned tutorial 4's task (which of five scene types a picture shows) as a small
ViT: patch 8 at 64 px, so an 8x8 grid of patch tokens plus a class token; four blocks of width
64 whose MLPs have 256 hidden units. hamlet's renderer gives the exact concept map of every
picture, so every IoU below is measured against the truth.
"""),
        code(SETUP),
        code("""
vit = gw.Session.from_zoo("hamlet-vit")
cnn = gw.Session.from_zoo("hamlet-classifier")
HELD_OUT = range(gw.zoo.hamlet.TEST_SEED_START, gw.zoo.hamlet.TEST_SEED_START + 300)
labels = vit.labels(HELD_OUT)
for name, s in [("hamlet-vit", vit), ("CNN", cnn)]:
    print(f"{name:<10s} held-out accuracy {(s.classify(HELD_OUT).argmax(1) == labels).float().mean():.1%}")
"""),
        md("""
## What are the layers called?

`layer_info()` runs one sample and lists every module: what it outputs, its **kind**, and the
map every analysis sees. A token layer's (N, 65, 64) becomes the (64, 8, 8) map of its patch
tokens (the class token is left out of the view, and out of edits unless asked); the class
token after the last block (`pool`, (N, 64)) is a **vector** layer, seen as (64, 1, 1).
`vit.layers`, the layers the widgets offer, are the block outputs and MLP hidden units.
"""),
        code("""
vit.layer_info()
"""),
        md("A misspelt name gets the close ones suggested:"),
        code("""
try:
    vit.dissect("block.2")
except KeyError as err:
    print(err)
"""),
        md("""
## Every block, beside the CNN

`gw.survey` dissects every layer on the same 100 scenes and reports, per layer, the share of
units whose best concept reaches IoU 0.04 (the usual bar), how many distinct concepts they
cover, and the best unit of each concept. (100 scenes keep this notebook quick; BENCHMARKS.md
has the same tables on more.)
"""),
        code("""
vit_survey = gw.survey(vit, n=100, progress=True)
cnn_survey = gw.survey(cnn, ["conv1", "conv2", "conv3", "conv4", "conv5"], n=100, progress=True)
vit_survey
"""),
        code("""
cnn_survey
"""),
        code("""
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
vit_survey.plot(ax=axes[0]); axes[0].set_title("hamlet-vit")
cnn_survey.plot(ax=axes[1]); axes[1].set_title("hamlet CNN")
fig.tight_layout()
"""),
        md("""
## Single-concept units, and where

Both models have them. In the ViT every block has some: from a quarter to almost half of the
units pass the bar, in the MLPs' hidden units as in the block outputs, fewer than in most of the
CNN's layers, and mostly for water, mountain, wall and roof; tree is the best concept of hardly
any.
Below, the best unit of each concept in the ViT's most interpretable layer, and that layer in
the UnitBrowser: heatmaps on the 8x8 patch grid, upsampled to the picture like any map.
"""),
        code("""
best = vit_survey.best_layer()
row = next(r for r in vit_survey.rows if r["layer"] == best)
print(f"{best}: {row['interpretable']:.0%} of {row['units']} units have a concept")
for concept, (unit, iou) in sorted(row["best"].items(), key=lambda kv: -kv[1][1]):
    print(f"  {concept:<9s} unit {unit:>3d}  IoU {iou:.2f}")
"""),
        code("""
gw.UnitBrowser(vit, best)
"""),
        md("""
## Removing the ViT's tree units

Few ViT units have tree as their *best* concept, so take in each block output the 20 units of
highest IoU with tree, ablate them (zero on the patch tokens; the class token stays as it is)
and measure each class's accuracy on 300 held-out scenes. The last block is left out: the head
reads only the class token, so after the last block the patch tokens feed nothing and editing
them cannot change a prediction.
"""),
        code("""
drops = {}
for layer in ["blocks.0", "blocks.1", "blocks.2"]:
    units = vit_survey.dissections[layer].ranked_for("tree")[:20]
    change = vit.ablation_accuracy(layer, units, seeds=HELD_OUT)
    drops[layer] = (change.before["forest"] - change.after["forest"], change.others_drop("forest"))
    print(f"{layer}: forest {change.before['forest']:.0%} -> {change.after['forest']:.0%}; "
          f"other classes {-100 * change.others_drop('forest'):+.1f} points")
"""),
        code("""
# check: somewhere, the tree units cost forests at least 10 points more than the other classes
best_drop = max(own - others for own, others in drops.values())
print(f"largest forest drop beyond the other classes: {100 * best_drop:.1f} points")
assert best_drop >= 0.10
"""),
        md("""
## The class token: a vector layer

A vector layer has no place in the image, so it is dissected image by image: a unit is "on"
in the pictures where its value passes its top-20% level, a concept is "in" a picture when it
covers 0.5% of it, and the score is how far the IoU of those two sets of pictures rises above
chance. The UnitBrowser shows its top pictures with their values and says there is no heatmap.
"""),
        code("""
pool = vit.dissect("pool", n=100, progress=True)
print(pool, pool.summary())
gw.UnitBrowser(vit, "pool", top=6)
"""),
        md("""
## Which GAN layer to look at, and which to edit

The same survey runs over the 11 layers of hamlet's GAN, and `gw.rewrite_survey` fits the
example rule of tutorial 3 ("every roof gets a tree"; the same context, copy and paste) at each
layer, measured on 100 samples the rule was not picked from (seeds 10,000-10,099). Both take
minutes, so they live in `python -m benchmarks.bench_survey gan rule`; measured 2026-12-07:

| layer | success: roof pixels turned tree | change on samples without roofs |
| --- | --- | --- |
| layer4 (8x8) | 14.4% | 1.10% |
| layer5 (16x16) | 55.0% | 0.85% |
| **layer6** (16x16) | **88.9%** | **0.74%** |
| layer7 (32x32) | 88.1% | 1.00% |
| layer8 (32x32) | 85.5% | 1.17% |

The rule works best at layer6, the default of `example_rule`: the highest success with the
least collateral change. Earlier layers are too coarse to hold a roof's shape (layer4's 8x8
grid), later ones are as successful but change more of the samples without roofs.
"""),
    ]


def _progress_bar(output) -> bool:
    """A tqdm.auto bar: a widget view without a picture whose text reads like ' 3/20 [00:01<'."""
    data = output.get("data", {})
    text = "".join(data.get("text/plain", ""))
    return (
        "application/vnd.jupyter.widget-view+json" in data
        and "image/png" not in data
        and bool(re.search(r"\d+/\d+ \[", text))
    )


def build(name: str, run: bool = True) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = NOTEBOOKS[name]()
    nb.metadata = {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    }
    path = HERE / f"{name}.ipynb"
    nbformat.write(nb, path)
    if run:
        subprocess.run(
            [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
             "--inplace", "--ExecutePreprocessor.timeout=300", str(path)],
            check=True,
        )
        nb = nbformat.read(path, as_version=4)
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:  # progress bars are live only: without widget state they read "0%"
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if not _progress_bar(o)]
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    wanted = sys.argv[1:]
    for name in NOTEBOOKS:
        if not wanted or any(w in name for w in wanted):
            print("building", build(name))
