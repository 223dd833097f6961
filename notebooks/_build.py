"""Write the tutorial notebooks from the cell sources below, then run them top to bottom.

    python notebooks/_build.py            # write and execute all five
    python notebooks/_build.py 02         # only those whose name contains "02"

Cells that start with ``# check`` hold assertions on real results; nbval re-runs every cell in
``make test``, so a notebook that rots fails the suite.
"""

from __future__ import annotations

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
dissection = session.dissect(LAYER, n=400, progress=False)
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
the samples where it fires most across the whole dissection set.
"""),
        code("""
browser = gw.UnitBrowser(session, LAYER)
browser
"""),
        code("""
# check: the browser starts on the most interpretable unit and shows its heatmaps
best = int(dissection.best_iou.argmax())
assert browser.unit == best
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
dissection = session.dissect(LAYER, n=400, progress=False)
trees = dissection.ranked_for("tree")[:20]
print("best tree units:", trees[:10])
"""),
        md("""
## The panel

Choose units by concept (or type numbers), drag the strength, switch between *remove* and
*insert* (insert sets the units to their high level, like GANPaint's brush), or restrict the
edit to a painted region.
"""),
        code("""
panel = gw.AblationPanel(session, LAYER, units=trees[:10])
panel
"""),
        code("""
session.undo()  # the panel's edit is on the shared stack: undo it from code
session.edits
"""),
        md("## How many units does it take?"),
        code("""
counts = [1, 2, 5, 10, 15, 20]
removed = [session.ablation_effect(LAYER, trees[:k], "tree", n=100).removed for k in counts]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(counts, [100 * r for r in removed], "o-", color="#2e7d32")
ax.set_xlabel("tree units ablated"); ax.set_ylabel("tree pixels removed (%)")
ax.set_ylim(0, 100); ax.grid(alpha=0.3)
"""),
        code("""
effect = session.ablation_effect(LAYER, trees, "tree", n=200)
print(f"{effect.removed:.0%} of tree pixels removed; other concepts' total area changed "
      f"{effect.others_changed():.0%}")
"""),
        code("""
# check: removing the tree units removes trees, and much less of everything else
assert effect.removed > 0.5
assert effect.others_changed() < effect.removed / 4
assert removed[-1] > removed[0]
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
edit = session.rewrite(rule["layer"], **req)
print(edit, f"· final loss {edit.losses[-1]:.3f} · {edit.seconds:.1f} s")
"""),
        md("Samples that nobody painted, before and after the edit: the rule was picked among seeds 0-199, these come from 1000 on."),
        code("""
seeds = list(range(1000, 1008))
with session.excluding(edit):
    original = session.generate(seeds)
changed = session.generate(seeds)
gw.ImageGrid(np.concatenate([original, changed]), columns=8, size=80,
             captions=["original"] * 8 + ["rewritten"] * 8)
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
dissection = session.dissect(LAYER, n=300, progress=False)
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
drops = {}
for name in session.classes:
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
ax.set_xticks(x, list(drops)); ax.set_ylabel("accuracy drop (points)"); ax.legend(fontsize=8)
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
"""),
        code(SETUP + "import torch\nfrom torch import nn"),
        code("""
class MyGenerator(nn.Module):
    z_dim = 32  # the Session reads the latent size from here (or pass z_dim=)

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.ConvTranspose2d(32, 64, 4), nn.ReLU())               # 4x4
        self.block2 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(64, 32, 3, padding=1), nn.ReLU())
        self.block3 = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(32, 16, 3, padding=1), nn.ReLU())
        self.to_rgb = nn.Sequential(nn.Conv2d(16, 3, 1), nn.Tanh())

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
gw.ImageGrid(np.concatenate([original, ablated]), columns=4, size=64,
             captions=["original"] * 4 + ["units 0-15 off"] * 4)
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

d = mine.dissect("block2", n=64, segmenter=BrightIsSky(), cache=False, progress=False)
d.table()[:3]
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
        nb.metadata["language_info"] = {"name": "python"}
        nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    wanted = sys.argv[1:]
    for name in NOTEBOOKS:
        if not wanted or any(w in name for w in wanted):
            print("building", build(name))
