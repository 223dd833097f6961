// ImageGrid view: images, heatmaps coloured by a LUT, threshold contours, click and hover.
// All state comes from traits: _images (PNG or raw pixels; _image_shape, encoding), _heat,
// _heat_shape, _lut, vmin, vmax, opacity, threshold, captions, columns, size.
// A click sets `clicked` = {index, x, y, n}; `_images` changes (re)load the images, with
// aria-busy="true" on the element until the newest ones are drawn.

const bytesOf = (v) =>
  v instanceof DataView ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
  : v instanceof ArrayBuffer ? new Uint8Array(v)
  : v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(0);

// One image from PNG bytes, or from raw H*W*C pixels (C = 3 or 4).
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

// RGBA overlay of one heatmap at W*H display pixels: LUT colour at `opacity`, plus a
// two-tone contour (white inside, dark outside) where the value crosses `level` (0-255).
function overlay(plane, h, w, W, H, lut, opacity, level) {
  const q = new Float32Array(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) q[y * W + x] = sample(plane, h, w, x, y, W, H);
  }
  const out = new ImageData(W, H);
  const a = Math.round(opacity * 255);
  const px = out.data;
  for (let i = 0; i < W * H; i++) {
    const k = Math.min(255, Math.round(q[i])) * 3;
    px[4 * i] = lut[k];
    px[4 * i + 1] = lut[k + 1];
    px[4 * i + 2] = lut[k + 2];
    px[4 * i + 3] = a;
  }
  if (level === null) return out;
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const i = y * W + x, inside = q[i] >= level;
    const edge = [[1, 0], [-1, 0], [0, 1], [0, -1]].some(([dx, dy]) => {
      const u = x + dx, v = y + dy;
      return u >= 0 && v >= 0 && u < W && v < H && (q[v * W + u] >= level) !== inside;
    });
    if (edge) px.set(inside ? [255, 255, 255, 255] : [0, 0, 0, 160], i * 4);
  }
  return out;
}

async function render({ model, el }) {
  el.classList.add("gw-grid");
  const cells = document.createElement("div");
  cells.className = "gw-grid-cells";
  const status = document.createElement("div");
  status.className = "gw-grid-status";
  status.textContent = "\u00a0";
  el.append(cells, status);
  let bitmaps = [];
  let loading = 0;

  const heat = () => {
    const [n, h, w] = model.get("_heat_shape");
    return { n, h, w, data: bytesOf(model.get("_heat")) };
  };
  const level = () => {
    const t = model.get("threshold"), lo = model.get("vmin"), hi = model.get("vmax");
    return t === null || t === undefined ? null : ((t - lo) / Math.max(hi - lo, 1e-12)) * 255;
  };

  function drawCell(canvas, i) {
    const img = bitmaps[i];
    const W = canvas.width, H = canvas.height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, W, H);
    ctx.imageSmoothingEnabled = W < img.width;
    ctx.drawImage(img, 0, 0, W, H);
    const { n, h, w, data } = heat();
    if (i >= n || data.length !== n * h * w) return;
    const plane = data.subarray(i * h * w, (i + 1) * h * w);
    const lut = bytesOf(model.get("_lut"));
    const over = overlay(plane, h, w, W, H, lut, model.get("opacity"), level());
    const layer = new OffscreenCanvas(W, H);
    layer.getContext("2d").putImageData(over, 0, 0);
    ctx.drawImage(layer, 0, 0);
  }

  function toImage(event, img) {
    const r = event.currentTarget.getBoundingClientRect();
    const x = Math.floor(((event.clientX - r.left) / r.width) * img.width);
    const y = Math.floor(((event.clientY - r.top) / r.height) * img.height);
    return [Math.min(Math.max(x, 0), img.width - 1), Math.min(Math.max(y, 0), img.height - 1)];
  }

  function describe(i, x, y) {
    const { n, h, w, data } = heat();
    let text = `#${i}  (${x}, ${y})`;
    if (i < n && data.length === n * h * w) {
      const img = bitmaps[i], lo = model.get("vmin"), hi = model.get("vmax");
      const plane = data.subarray(i * h * w, (i + 1) * h * w);
      const q = sample(plane, h, w, x, y, img.width, img.height);
      text += `  value ${(lo + (q / 255) * (hi - lo)).toPrecision(3)}`;
    }
    return text;
  }

  function layout() {
    const size = model.get("size"), captions = model.get("captions");
    const dpr = window.devicePixelRatio || 1;
    const columns = Math.min(model.get("columns"), Math.max(bitmaps.length, 1));
    cells.style.gridTemplateColumns = `repeat(${columns}, ${size}px)`;
    cells.replaceChildren(...bitmaps.map((img, i) => {
      const figure = document.createElement("figure");
      figure.className = "gw-grid-cell";
      const canvas = document.createElement("canvas");
      const cssH = Math.round((size * img.height) / img.width);
      canvas.width = Math.round(size * dpr);
      canvas.height = Math.round(cssH * dpr);
      canvas.style.width = `${size}px`;
      canvas.style.height = `${cssH}px`;
      canvas.dataset.index = i;
      canvas.addEventListener("pointermove", (e) => {
        status.textContent = describe(i, ...toImage(e, img));
      });
      canvas.addEventListener("pointerleave", () => { status.textContent = "\u00a0"; });
      canvas.addEventListener("click", (e) => {
        const [x, y] = toImage(e, img);
        model.set("clicked", { index: i, x, y, n: (model.get("clicked")?.n || 0) + 1 });
        model.save_changes();
      });
      figure.append(canvas);
      if (captions[i]) {
        const caption = document.createElement("figcaption");
        caption.textContent = captions[i];
        caption.title = captions[i];
        figure.append(caption);
      }
      drawCell(canvas, i);
      return figure;
    }));
  }

  let pending = false;  // traits changed together redraw once
  const redraw = () => {
    if (pending) return;
    pending = true;
    queueMicrotask(() => {
      pending = false;
      cells.querySelectorAll("canvas").forEach((c) => drawCell(c, +c.dataset.index));
    });
  };

  // aria-busy marks images still decoding (assistive tech, and tests waiting for a redraw).
  async function load() {
    const token = ++loading;
    el.setAttribute("aria-busy", "true");
    const shape = model.get("_image_shape"), encoding = model.get("encoding");
    const decoded = await Promise.all(model.get("_images").map((d) => decode(d, shape, encoding)));
    if (token !== loading) return;
    bitmaps = decoded;
    layout();
    el.removeAttribute("aria-busy");
    el.dispatchEvent(new CustomEvent("gw-rendered"));
  }

  const handlers = {
    "change:_images": load,
    "change:captions": layout,
    "change:columns": layout,
    "change:size": layout,
  };
  for (const name of ["_heat", "_heat_shape", "_lut", "vmin", "vmax", "opacity", "threshold"]) {
    handlers[`change:${name}`] = redraw;
  }
  for (const [event, fn] of Object.entries(handlers)) model.on(event, fn);
  await load();
  return () => {
    loading = -1;
    for (const [event, fn] of Object.entries(handlers)) model.off(event, fn);
  };
}

export default { render };
