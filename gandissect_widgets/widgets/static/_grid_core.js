// GridView: a grid of images with heatmaps, captions, click and hover; used by ImageGrid and
// by every composite widget. It draws a `spec`:
//   images (PNG or raw pixels), shape [H, W, C], encoding "png" | "raw",
//   heat (uint8 planes), heat_shape [n, h, w], vmin, vmax, threshold (or null),
//   mode "highlight" | "outline" | "colormap" | "none", lut (768 RGB bytes), opacity, captions, columns, size.
// "highlight" is GAN Dissection's picture: where the heatmap is above the threshold the image
// stays bright inside an outline, the rest is dimmed. "colormap" blends the LUT colours at
// `opacity`, with the threshold contour. Newest images win: a decode that finishes after a
// newer one started is dropped. After each draw the element fires "gw-rendered"; while images
// decode it carries aria-busy="true".

const DIM = 0.35;  // brightness kept outside the highlighted region (render.highlight: same)
const OUTLINE = [255, 214, 10];

function decode(data, [H, W, C], encoding) {
  const src = bytesOf(data);
  if (encoding !== "raw") return createImageBitmap(new Blob([src], { type: "image/png" }));
  const rgba = new Uint8ClampedArray(H * W * 4).fill(255);
  for (let i = 0; i < H * W; i++) for (let c = 0; c < C; c++) rgba[4 * i + c] = src[C * i + c];
  return createImageBitmap(new ImageData(rgba, W, H));
}

// Bilinear sample (align_corners=false, like torch) of an h*w uint8 plane at image-pixel
// centre (x, y) of an image W*H; returns a float in [0, 255].
function sample(plane, h, w, x, y, W, H) {
  const sx = Math.min(Math.max((x + 0.5) * w / W - 0.5, 0), w - 1);
  const sy = Math.min(Math.max((y + 0.5) * h / H - 0.5, 0), h - 1);
  const x0 = Math.floor(sx), y0 = Math.floor(sy);
  const x1 = Math.min(x0 + 1, w - 1), y1 = Math.min(y0 + 1, h - 1);
  const fx = sx - x0, fy = sy - y0;
  const top = plane[y0 * w + x0] * (1 - fx) + plane[y0 * w + x1] * fx;
  const bottom = plane[y1 * w + x0] * (1 - fx) + plane[y1 * w + x1] * fx;
  return top * (1 - fy) + bottom * fy;
}

function upsample(plane, h, w, W, H) {
  const q = new Float32Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) q[y * W + x] = sample(plane, h, w, x, y, W, H);
  return q;
}

// Pixels on either side of the `level` crossing: 1 inside, -1 outside, 0 elsewhere.
function edges(q, W, H, level) {
  const out = new Int8Array(W * H);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const i = y * W + x, inside = q[i] >= level;
    for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
      const u = x + dx, v = y + dy;
      if (u >= 0 && v >= 0 && u < W && v < H && (q[v * W + u] >= level) !== inside) {
        out[i] = inside ? 1 : -1;
        break;
      }
    }
  }
  return out;
}

// RGBA layer over the image: LUT colour at `opacity` and a two-tone contour.
function colormapLayer(q, W, H, lut, opacity, level) {
  const out = new ImageData(W, H), px = out.data, a = Math.round(opacity * 255);
  for (let i = 0; i < W * H; i++) {
    const k = Math.min(255, Math.round(q[i])) * 3;
    px[4 * i] = lut[k]; px[4 * i + 1] = lut[k + 1]; px[4 * i + 2] = lut[k + 2]; px[4 * i + 3] = a;
  }
  if (level === null) return out;
  const e = edges(q, W, H, level);
  for (let i = 0; i < W * H; i++) {
    if (e[i]) px.set(e[i] > 0 ? [255, 255, 255, 255] : [0, 0, 0, 160], i * 4);
  }
  return out;
}

// RGBA layer over the image: black at (1 - DIM) below the level, an outline at the crossing.
function highlightLayer(q, W, H, level, dimmed = true) {
  const out = new ImageData(W, H), px = out.data, dim = dimmed ? Math.round((1 - DIM) * 255) : 0;
  const e = edges(q, W, H, level);
  for (let i = 0; i < W * H; i++) {
    if (e[i] > 0) px.set([...OUTLINE, 255], 4 * i);
    else if (e[i] < 0) px.set([0, 0, 0, 220], 4 * i);
    else if (q[i] < level) px[4 * i + 3] = dim;
  }
  return out;
}

class GridView {
  constructor(name, { onClick, title } = {}) {
    this.cells = h("div", "gw-grid-cells");
    this.status = h("div", "gw-grid-status", { textContent: "\u00a0" });
    const head = title ? [h("div", "gw-grid-title", { textContent: title })] : [];
    this.el = h("div", "gw-grid", {}, [...head, this.cells, this.status]);
    if (name) this.el.dataset.name = name;
    this.onClick = onClick;
    this.spec = {};
    this.bitmaps = [];
    this.loading = 0;
    this.queued = false;
    this.frames = 0;  // draws so far (tests and benchmarks count frames)
  }

  // Show `spec`; returns a promise that settles when it is drawn.
  update(spec) {
    const old = this.spec;
    this.spec = spec;
    if (spec.images !== old.images || spec.encoding !== old.encoding || "" + spec.shape !== "" + old.shape) {
      this.busy = this.load();
      return this.busy;
    }
    if (this.el.hasAttribute("aria-busy")) return this.busy;  // the load draws the newest spec
    if (spec.captions !== old.captions || spec.columns !== old.columns || spec.size !== old.size) {
      this.layout();
      this.rendered();
      return Promise.resolve();
    }
    this.redraw();
    return Promise.resolve();
  }

  async load() {
    const token = ++this.loading, { images = [], shape = [0, 0, 3], encoding = "png" } = this.spec;
    this.el.setAttribute("aria-busy", "true");
    const decoded = await Promise.all(images.map((d) => decode(d, shape, encoding)));
    if (token !== this.loading) return;  // a newer load started: it wins
    const same = this.bitmaps.length === decoded.length && this.laidOut === this.layoutKey()
      && decoded.every((b, i) => b.width === this.bitmaps[i].width && b.height === this.bitmaps[i].height);
    this.bitmaps = decoded;
    if (same) {  // same cells: draw into the canvases there are (no DOM churn mid-drag)
      this.cells.querySelectorAll("canvas").forEach((c) => this.drawCell(c, +c.dataset.index));
    } else {
      this.layout();
    }
    this.el.removeAttribute("aria-busy");
    this.rendered();
  }

  rendered() {
    this.frames++;
    this.el.dispatchEvent(new CustomEvent("gw-rendered", { bubbles: true, detail: { frames: this.frames } }));
  }

  heat() {
    const [n, hh, w] = this.spec.heat_shape || [0, 0, 0];
    const data = bytesOf(this.spec.heat);
    return { n, h: hh, w, data, ok: data.length === n * hh * w && n > 0 };
  }

  level() {
    const { threshold: t, vmin: lo = 0, vmax: hi = 1 } = this.spec;
    return t === null || t === undefined ? null : ((t - lo) / Math.max(hi - lo, 1e-12)) * 255;
  }

  drawCell(canvas, i) {
    const img = this.bitmaps[i];
    if (!img) return;
    const W = canvas.width, H = canvas.height, ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, W, H);
    ctx.imageSmoothingEnabled = W < img.width;
    ctx.drawImage(img, 0, 0, W, H);
    const { n, h: hh, w, data, ok } = this.heat();
    const mode = this.spec.mode || "colormap";
    if (!ok || i >= n || mode === "none") return;
    const q = upsample(data.subarray(i * hh * w, (i + 1) * hh * w), hh, w, W, H);
    const level = this.level();
    const layer = (mode === "highlight" || mode === "outline") && level !== null
      ? highlightLayer(q, W, H, level, mode === "highlight")
      : colormapLayer(q, W, H, bytesOf(this.spec.lut), this.spec.opacity ?? 0.5, level);
    const off = new OffscreenCanvas(W, H);
    off.getContext("2d").putImageData(layer, 0, 0);
    ctx.drawImage(off, 0, 0);
  }

  toImage(event, img) {
    const r = event.currentTarget.getBoundingClientRect();
    const x = Math.floor(((event.clientX - r.left) / r.width) * img.width);
    const y = Math.floor(((event.clientY - r.top) / r.height) * img.height);
    return [Math.min(Math.max(x, 0), img.width - 1), Math.min(Math.max(y, 0), img.height - 1)];
  }

  describe(i, x, y) {
    const { n, h: hh, w, data, ok } = this.heat();
    const label = (this.spec.captions || [])[i] || `image ${i + 1}`;  // its caption names it
    let text = `${label} · x ${x}, y ${y}`;
    if (ok && i < n) {
      const img = this.bitmaps[i], { vmin: lo = 0, vmax: hi = 1 } = this.spec;
      const q = sample(data.subarray(i * hh * w, (i + 1) * hh * w), hh, w, x, y, img.width, img.height);
      text += `  value ${(lo + (q / 255) * (hi - lo)).toPrecision(3)}`;
    }
    return text;
  }

  layoutKey() {
    const { size = 128, captions = [], columns = 8 } = this.spec;
    return JSON.stringify([size, columns, captions, window.devicePixelRatio || 1]);
  }

  layout() {
    this.laidOut = this.layoutKey();
    const { size = 128, captions = [], columns = 8 } = this.spec;
    const dpr = window.devicePixelRatio || 1;
    const cols = Math.min(columns, Math.max(this.bitmaps.length, 1));
    // Columns of `size` px; fewer (wrapping) when the cell is narrower; never clipped.
    this.cells.style.setProperty("--gw-cell", `${size}px`);
    this.cells.style.maxWidth = `calc(${cols} * ${size}px + ${cols - 1} * 4px)`;
    this.cells.replaceChildren(...this.bitmaps.map((img, i) => {
      const canvas = h("canvas", "");
      const cssH = Math.round((size * img.height) / img.width);
      canvas.width = Math.round(size * dpr);
      canvas.height = Math.round(cssH * dpr);
      canvas.style.aspectRatio = `${img.width} / ${img.height}`;
      canvas.dataset.index = i;
      canvas.addEventListener("pointermove", (e) => {
        this.status.textContent = this.describe(i, ...this.toImage(e, img));
      });
      canvas.addEventListener("pointerleave", () => { this.status.textContent = "\u00a0"; });
      if (this.onClick) {
        canvas.addEventListener("click", (e) => this.onClick(i, ...this.toImage(e, img)));
      } else {
        canvas.style.cursor = "default";
      }
      const figure = h("figure", "gw-grid-cell", {}, [canvas]);
      if (captions[i]) figure.append(h("figcaption", "", { textContent: captions[i], title: captions[i] }));
      this.drawCell(canvas, i);
      return figure;
    }));
  }

  // Traits changed together redraw once.
  redraw() {
    if (this.queued) return;
    this.queued = true;
    queueMicrotask(() => {
      this.queued = false;
      this.cells.querySelectorAll("canvas").forEach((c) => this.drawCell(c, +c.dataset.index));
      this.rendered();
    });
  }
}

// A composite's grid trait (a dict) merged with the composite's shared drawing traits.
function gridSpec(model, trait) {
  return {
    lut: model.get("_lut"),
    opacity: model.get("opacity"),
    mode: model.get("heat_mode"),
    ...(model.get(trait) || {}),  // a grid may set its own mode (e.g. "outline")
  };
}

// Photos: image files dropped onto `target`, or chosen with the bar's "add photo…" button, go to
// Python one message per file: model.send({event: "photo", name, type}, undefined, [bytes]),
// while the `accept_photos` trait is true (Python decodes them; see widgets/_photos.py). The
// bar shows `photo_status` (`photo_kind` "busy" adds a cancel button: {event: "photo_cancel"}).
// Files over 8 MB are refused here, before their bytes travel (a notebook server drops
// websocket messages over 10 MB). Returns {el, cleanup}.
const PHOTO_MAX_BYTES = 8 * 2 ** 20;  // widgets/_photos.py: MAX_PHOTO_BYTES

function photoDrop(model, target) {
  const input = h("input", "gw-photo-input", { type: "file", accept: "image/png,image/jpeg", multiple: true });
  input.hidden = true;
  const pick = h("button", "gw-btn gw-photo-add", { textContent: "add photo\u2026",
    title: "Invert a photo (PNG or JPEG) into the generator; or drop image files onto the grid" });
  const cancel = h("button", "gw-btn gw-photo-cancel", { textContent: "cancel", title: "Stop inverting" });
  const note = h("span", "gw-photo-status", { role: "status" });
  const bar = h("div", "gw-field gw-photo-bar", {}, [pick, input, cancel, note]);
  const on = () => model.get("accept_photos") && !isSaved(model);
  const say = (text, kind) => { note.textContent = text; note.dataset.kind = kind; note.hidden = !text; };
  async function send(files) {
    for (const file of files) {
      if (file.size > PHOTO_MAX_BYTES) {
        say(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MB; photos up to 8 MB are taken `
          + "(a notebook server drops bigger messages): save a smaller copy", "error");
        continue;
      }
      model.send({ event: "photo", name: file.name, type: file.type }, undefined, [await file.arrayBuffer()]);
    }
  }
  pick.addEventListener("click", () => input.click());
  input.addEventListener("change", () => { send([...input.files]); input.value = ""; });
  cancel.addEventListener("click", () => model.send({ event: "photo_cancel" }));
  const files = (e) => on() && [...(e.dataTransfer?.types || [])].includes("Files");
  const over = (e) => {
    if (!files(e)) return;
    e.preventDefault();  // this element takes the drop
    e.dataTransfer.dropEffect = "copy";
    target.classList.add("gw-drop");
  };
  const leave = (e) => { if (!target.contains(e.relatedTarget)) target.classList.remove("gw-drop"); };
  const drop = (e) => {
    target.classList.remove("gw-drop");
    if (!files(e)) return;
    e.preventDefault();
    send([...e.dataTransfer.files]);
  };
  const events = { dragenter: over, dragover: over, dragleave: leave, drop };
  for (const [name, fn] of Object.entries(events)) target.addEventListener(name, fn);
  const draw = () => {
    bar.hidden = !on();
    cancel.hidden = model.get("photo_kind") !== "busy";
    say(model.get("photo_status") || "", model.get("photo_kind") || "");
  };
  const traits = ["accept_photos", "photo_status", "photo_kind"];
  for (const n of traits) model.on(`change:${n}`, draw);
  draw();
  return {
    el: bar,
    cleanup() {
      for (const n of traits) model.off(`change:${n}`, draw);
      for (const [name, fn] of Object.entries(events)) target.removeEventListener(name, fn);
    },
  };
}
