// Snapshot view: saved pages of image groups with heatmaps; a selector switches pages.
// Everything comes from traits (title, pages, page, size, columns, opacity, show_heat,
// _images: PNG bytes, _heats: uint8 planes, _lut: 768 RGB bytes), so it works without a kernel.

const bytes = (v) =>
  v instanceof DataView ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
  : v instanceof ArrayBuffer ? new Uint8Array(v)
  : v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(0);

const node = (tag, className, text) => {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
};

// One heatmap plane (h*w levels 0-255) as an h x w canvas of LUT colours.
function heatCanvas(plane, h, w, lut) {
  const c = new OffscreenCanvas(w, h);
  const img = new ImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    img.data.set([lut[3 * plane[i]], lut[3 * plane[i] + 1], lut[3 * plane[i] + 2], 255], 4 * i);
  }
  c.getContext("2d").putImageData(img, 0, 0);
  return c;
}

function render({ model, el }) {
  el.classList.add("gw-snapshot");
  el.tabIndex = 0;
  const head = node("div", "gw-snap-head");
  const body = node("div", "gw-snap-body");
  el.append(head, body);
  const bitmaps = new Map();  // image index -> Promise<ImageBitmap>
  const bitmap = (i) => {
    if (!bitmaps.has(i)) {
      const png = new Blob([bytes(model.get("_images")[i])], { type: "image/png" });
      bitmaps.set(i, createImageBitmap(png));
    }
    return bitmaps.get(i);
  };
  const pages = () => model.get("pages");

  function choose(i) {
    const n = pages().length;
    if (!n) return;
    model.set("page", ((i % n) + n) % n);
    try { model.save_changes(); } catch (_) { /* a saved page has no kernel to tell */ }
  }

  function header() {
    const title = model.get("title"), n = pages().length, page = model.get("page");
    const parts = title ? [node("span", "gw-snap-title", title)] : [];
    if (n > 4) {
      const select = node("select", "gw-snap-select");
      pages().forEach((p, i) => select.append(Object.assign(node("option", "", p.label), { value: i })));
      select.value = page;
      select.addEventListener("change", () => choose(+select.value));
      const prev = node("button", "gw-snap-step", "\u25C0"), next = node("button", "gw-snap-step", "\u25B6");
      prev.addEventListener("click", () => choose(model.get("page") - 1));
      next.addEventListener("click", () => choose(model.get("page") + 1));
      parts.push(prev, select, next);
    } else if (n > 1) {
      const bar = node("span", "gw-snap-toggle");
      pages().forEach((p, i) => {
        const b = node("button", i === page ? "gw-snap-on" : "", p.label);
        b.addEventListener("click", () => choose(i));
        bar.append(b);
      });
      parts.push(bar);
    }
    if (pages().some((p) => p.groups.some((g) => g.items.some((it) => it.heat >= 0)))) {
      const label = node("label", "gw-snap-heat");
      const box = Object.assign(node("input"), { type: "checkbox", checked: model.get("show_heat") });
      box.addEventListener("change", () => model.set("show_heat", box.checked));
      label.append(box, " heatmaps");
      parts.push(label);
    }
    head.replaceChildren(...parts);
  }

  async function drawCell(canvas, item, group) {
    const img = await bitmap(item.image);
    const W = canvas.width, H = canvas.height, ctx = canvas.getContext("2d");
    ctx.globalAlpha = 1;
    ctx.imageSmoothingEnabled = W < img.width;
    ctx.drawImage(img, 0, 0, W, H);
    if (item.heat < 0 || !model.get("show_heat")) return;
    const [h, w] = group.heat_shape;
    if (group.level !== undefined && group.level !== null && model.get("heat_mode") === "highlight") {
      // GAN Dissection's picture, as the live widgets draw it (_grid_core.js)
      const q = upsample(bytes(model.get("_heats")[item.heat]), h, w, W, H);
      const off = new OffscreenCanvas(W, H);
      off.getContext("2d").putImageData(highlightLayer(q, W, H, group.level), 0, 0);
      ctx.drawImage(off, 0, 0);
      return;
    }
    const heat = heatCanvas(bytes(model.get("_heats")[item.heat]), h, w, bytes(model.get("_lut")));
    ctx.globalAlpha = model.get("opacity");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "medium";
    ctx.drawImage(heat, 0, 0, W, H);
  }

  let drawing = 0;
  async function draw() {
    const token = ++drawing;
    const page = pages()[model.get("page")];
    el.dataset.page = model.get("page");
    header();
    if (!page) { body.replaceChildren(); return; }
    const size = model.get("size"), dpr = window.devicePixelRatio || 1;
    const jobs = [];
    const info = page.info ? [node("div", "gw-snap-info", page.info)] : [];
    const groups = page.groups.map((g) => {
      const box = node("div", "gw-snap-group");
      if (g.title) box.append(node("div", "gw-snap-group-title", g.title));
      const cells = node("div", "gw-snap-cells");
      const cols = Math.min(model.get("columns"), g.items.length || 1);
      // columns of `size` px that wrap (and shrink) in a narrower page, never overflow it
      cells.style.gridTemplateColumns = `repeat(auto-fill, minmax(min(${size}px, 100%), ${size}px))`;
      cells.style.maxWidth = `calc(${cols} * ${size}px + ${cols - 1} * 4px)`;
      for (const item of g.items) {
        const figure = node("figure", "gw-snap-cell");
        const canvas = node("canvas");
        canvas.width = canvas.height = Math.round(size * dpr);
        canvas.style.width = "100%";
        canvas.style.height = "auto";
        figure.append(canvas);
        if (item.caption) figure.append(node("figcaption", "", item.caption));
        cells.append(figure);
        jobs.push(bitmap(item.image).then((img) => {
          canvas.height = Math.round((size * dpr * img.height) / img.width);
          canvas.style.aspectRatio = `${img.width} / ${img.height}`;
          return drawCell(canvas, item, g);
        }));
      }
      box.append(cells);
      return box;
    });
    body.replaceChildren(...info, ...groups);
    await Promise.all(jobs);
    if (token === drawing) el.dispatchEvent(new CustomEvent("gw-rendered"));
  }

  const onKey = (e) => {
    if (e.key === "ArrowRight" || e.key === "ArrowDown") choose(model.get("page") + 1);
    else if (e.key === "ArrowLeft" || e.key === "ArrowUp") choose(model.get("page") - 1);
    else return;
    e.preventDefault();
  };
  el.addEventListener("keydown", onKey);
  const reload = () => { bitmaps.clear(); draw(); };
  const handlers = {
    "change:page": draw, "change:pages": draw, "change:show_heat": draw, "change:opacity": draw,
    "change:size": draw, "change:columns": draw, "change:title": header, "change:_images": reload,
    "change:_heats": draw, "change:_lut": draw, "change:heat_mode": draw,
  };
  for (const [event, fn] of Object.entries(handlers)) model.on(event, fn);
  draw();
  return () => {
    drawing = -1;
    el.removeEventListener("keydown", onKey);
    for (const [event, fn] of Object.entries(handlers)) model.off(event, fn);
  };
}

export default { render };
