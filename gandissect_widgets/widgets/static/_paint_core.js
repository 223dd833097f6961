// Paint view: an image with a brush. Strokes are drawn here (pointer events coalesced to
// animation frames); the binary H*W mask is synced once per stroke through the `_mask` trait.
// Traits: _image (PNG), _shape [H, W], _mask, _strokes, _undo_depth, size, brush, mode,
// opacity, color. "Undo stroke" asks Python (which keeps the history) with a message.
// PaintCanvas renders it on its own traits; composites on theirs, through mapped().

const rgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));

const element = (tag, className, props = {}) => h(tag, className, props);

async function paintView({ model, el }) {
  el.classList.add("gw-paint");
  const bar = element("div", "gw-paint-bar");
  const modes = { paint: element("button", "gw-paint-btn", { textContent: "Paint" }),
    erase: element("button", "gw-paint-btn", { textContent: "Erase" }) };
  const brush = element("input", "gw-paint-brush",
    { type: "range", min: 1, max: 64, title: "Brush size (image pixels)" });
  const brushLabel = element("span", "gw-paint-label");
  // symbols keep the bar one row over a 256 px canvas; the names say what they do
  const undo = element("button", "gw-paint-btn", { textContent: "\u21B6 stroke",
    title: "Undo the last paint stroke (the model is not touched)" });
  undo.setAttribute("aria-label", "Undo stroke");
  const clear = element("button", "gw-paint-btn", { textContent: "\u2715", title: "Clear the mask" });
  clear.setAttribute("aria-label", "Clear");
  bar.append(modes.paint, modes.erase, brush, brushLabel, undo, clear);
  const view = element("canvas", "gw-paint-view");
  el.append(bar, view);

  const mask = document.createElement("canvas"); // image resolution; alpha = mask
  let image = null, loading = 0, hover = null, stroke = null, points = [], frame = 0;
  const shape = () => model.get("_shape");

  function toImage(e) {
    const r = view.getBoundingClientRect(), [H, W] = shape();
    return [((e.clientX - r.left) / r.width) * W, ((e.clientY - r.top) / r.height) * H];
  }

  function drawMask(bits) {
    const [H, W] = shape();
    mask.width = W;
    mask.height = H;
    if (bits.length !== H * W) return;
    const data = new ImageData(W, H), [r, g, b] = rgb(model.get("color"));
    for (let i = 0; i < bits.length; i++) {
      if (bits[i]) data.data.set([r, g, b, 255], 4 * i);
    }
    mask.getContext("2d").putImageData(data, 0, 0);
  }

  function readMask() {
    const [H, W] = shape();
    const alpha = mask.getContext("2d").getImageData(0, 0, W, H).data;
    const bits = new Uint8Array(H * W);
    for (let i = 0; i < bits.length; i++) bits[i] = alpha[4 * i + 3] >= 128 ? 1 : 0;
    return bits;
  }

  function redraw() {
    const [H, W] = shape(), size = model.get("size"), dpr = window.devicePixelRatio || 1;
    const cssH = Math.round((size * H) / W);
    view.style.width = `${size}px`;
    view.style.height = "auto";  // the bitmap's aspect ratio; shrinks with max-width: 100%
    view.width = Math.round(size * dpr);
    view.height = Math.round(cssH * dpr);
    const ctx = view.getContext("2d");
    ctx.clearRect(0, 0, view.width, view.height);
    if (image) ctx.drawImage(image, 0, 0, view.width, view.height);
    ctx.imageSmoothingEnabled = false;
    ctx.globalAlpha = model.get("opacity");
    ctx.drawImage(mask, 0, 0, view.width, view.height);
    ctx.globalAlpha = 1;
    if (hover) {
      const scale = view.width / W;
      ctx.beginPath();
      ctx.arc(hover[0] * scale, hover[1] * scale, (model.get("brush") / 2) * scale, 0, 2 * Math.PI);
      ctx.lineWidth = dpr;
      ctx.strokeStyle = "rgba(255,255,255,0.9)";
      ctx.stroke();
      ctx.setLineDash([3 * dpr, 3 * dpr]);
      ctx.strokeStyle = "rgba(0,0,0,0.7)";
      ctx.stroke();
      ctx.setLineDash([]);
    }
  }

  // Draw the points gathered since the last animation frame onto the mask, then show it.
  function flush() {
    frame = 0;
    if (stroke && points.length) {
      const ctx = mask.getContext("2d"), width = model.get("brush");
      const erase = model.get("mode") === "erase";
      ctx.globalCompositeOperation = erase ? "destination-out" : "source-over";
      ctx.fillStyle = ctx.strokeStyle = model.get("color");
      ctx.lineWidth = width;
      ctx.lineCap = ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(...stroke.last);
      for (const p of points) ctx.lineTo(...p);
      ctx.stroke();
      if (stroke.fresh) {  // a tap with no movement still paints a dot
        ctx.beginPath();
        ctx.arc(stroke.last[0], stroke.last[1], width / 2, 0, 2 * Math.PI);
        ctx.fill();
        stroke.fresh = false;
      }
      stroke.last = points[points.length - 1];
      points = [];
    }
    redraw();
  }
  const schedule = () => { frame ||= requestAnimationFrame(flush); };

  function commit(bits) {
    drawMask(bits);
    redraw();
    model.set("_mask", new DataView(bits.buffer));
    model.set("_strokes", model.get("_strokes") + 1);
    model.save_changes();
  }

  function onDown(e) {
    if (stroke || (e.pointerType === "mouse" && e.button !== 0)) return;
    e.preventDefault();
    try { view.setPointerCapture(e.pointerId); } catch { /* pointer already gone */ }
    const p = toImage(e);
    stroke = { id: e.pointerId, last: p, fresh: true };
    points = [p];
    hover = e.pointerType === "mouse" ? p : null;
    schedule();
  }
  function onMove(e) {
    if (stroke && e.pointerId === stroke.id) {
      const events = e.getCoalescedEvents?.() ?? [];
      for (const c of events.length ? events : [e]) points.push(toImage(c));
    }
    hover = e.pointerType === "touch" ? null : toImage(e);
    schedule();
  }
  function onUp(e) {
    if (!stroke || e.pointerId !== stroke.id) return;
    if (frame) cancelAnimationFrame(frame);
    flush();
    stroke = null;
    commit(readMask());
  }
  function onLeave() {
    hover = null;
    schedule();
  }

  function syncBar() {
    for (const [name, button] of Object.entries(modes)) {
      button.classList.toggle("gw-active", model.get("mode") === name);
      button.setAttribute("aria-pressed", model.get("mode") === name);
    }
    brush.value = model.get("brush");
    brushLabel.textContent = `${model.get("brush")} px`;
    undo.disabled = model.get("_undo_depth") < 1;
  }
  function setTrait(name, value) {
    model.set(name, value);
    model.save_changes();
    syncBar();
  }
  modes.paint.addEventListener("click", () => setTrait("mode", "paint"));
  modes.erase.addEventListener("click", () => setTrait("mode", "erase"));
  brush.addEventListener("input", () => setTrait("brush", Number(brush.value)));
  undo.addEventListener("click", () => model.send({ event: "undo" }));
  clear.addEventListener("click", () => {
    const [H, W] = shape();
    commit(new Uint8Array(H * W));
  });

  async function loadImage() {
    const token = ++loading, png = bytesOf(model.get("_image"));
    const blob = new Blob([png], { type: "image/png" });
    const bitmap = png.length ? await createImageBitmap(blob) : null;
    if (token !== loading) return;
    image = bitmap;
    redraw();
  }
  const loadMask = () => { drawMask(bytesOf(model.get("_mask"))); redraw(); };

  view.style.touchAction = "none";
  const listeners = { pointerdown: onDown, pointermove: onMove, pointerup: onUp,
    pointercancel: onUp, pointerleave: onLeave };
  for (const [type, fn] of Object.entries(listeners)) view.addEventListener(type, fn);
  const handlers = {
    "change:_image": loadImage, "change:_mask": loadMask, "change:_shape": loadMask,
    "change:color": loadMask, "change:size": redraw, "change:opacity": redraw,
    "change:brush": syncBar, "change:mode": syncBar, "change:_undo_depth": syncBar };
  for (const [event, fn] of Object.entries(handlers)) model.on(event, fn);
  syncBar();
  drawMask(bytesOf(model.get("_mask")));
  await loadImage();
  return () => {
    loading = -1;
    if (frame) cancelAnimationFrame(frame);
    for (const [event, fn] of Object.entries(handlers)) model.off(event, fn);
  };
}


// The paint view on a composite's canvas_* traits (CanvasTraits in paint_canvas.py).
const CANVAS_TRAITS = { _image: "canvas_image", _shape: "canvas_shape", _mask: "canvas_mask",
  _strokes: "canvas_strokes", _undo_depth: "canvas_undo_depth", size: "canvas_size",
  brush: "canvas_brush", mode: "canvas_mode", opacity: "canvas_opacity", color: "canvas_color" };
function canvasView(model, el) {
  return paintView({ model: mapped(model, CANVAS_TRAITS, "canvas"), el });
}
