// RuleEditor view: one module for the whole widget. Traits: layer, seeds, current, gallery,
// tray (grid dicts), canvas_* (paint canvas), canvas_caption, copy_seed, paste_at,
// context_seeds, placing, rank, steps, view, path, running, has_rewrite, rewrite_applied,
// can_redo, status, status_kind. Buttons and clicks set `_action`; Python does the work.
// Photos dropped onto the gallery (accept_photos) go to Python: photoDrop in _grid_core.js.

async function render({ model, el }) {
  const saved = isSaved(model);
  const root = h("div", "gw-composite gw-rule-editor" + (saved ? " gw-saved" : ""));
  const send = (name, value) => { model.set(name, value); model.save_changes(); };
  const button = (text, action, title, extra = "") => {
    const b = h("button", "gw-btn " + extra, { textContent: text, title });
    b.addEventListener("click", () => act(model, action));
    return b;
  };

  const caption = h("div", "gw-hint gw-re-caption");
  const paintEl = h("div", "gw-re-paint");
  const copy = button("Copy", "copy", "The painted region is what to copy");
  const paste = button("Paste", "paste", "Then click a gallery image where the copy goes");
  const context = button("Add to context", "context", "The painted region is a place where the rule holds");
  const painting = h("div", "gw-col gw-re-painting", {}, [caption, paintEl,
    h("div", "gw-field", {}, [copy, paste, context])]);

  const gallery = new GridView("gallery", {
    title: "samples: click one to paint on it",
    onClick: (index, x, y) => act(model, "gallery", { index, x, y }),
  });
  const tray = new GridView("tray", {
    title: "regions (click one to remove it)",
    onClick: (index, x, y) => act(model, "tray", { index, x, y }),
  });
  const photos = photoDrop(model, gallery.el);
  const galleryBox = h("div", "gw-col gw-grow gw-re-gallery", {}, [gallery.el, photos.el]);

  const number = (label, trait, min, max, step) => {
    const input = h("input", "", { type: "number", min, max, step });
    input.setAttribute("aria-label", label);
    // sent as typed: Python refuses what is out of range and says why in the status
    input.addEventListener("change", () => { const v = Number(input.value); send(trait, Number.isFinite(v) ? Math.round(v) : 0); });
    input.addEventListener("keydown", (e) => e.stopPropagation());
    return [input, h("label", "gw-field", {}, [h("span", "gw-label", { textContent: label }), input])];
  };
  const [rank, rankField] = number("rank", "rank", 1, 64, 1);
  const [steps, stepsField] = number("steps", "steps", 1, 20000, 100);
  const execute = button("Execute", "execute", "Rewrite the layer so the pasted copy holds wherever the context matches", "gw-primary");
  const cancel = button("Cancel", "cancel", "Stop the running rewrite");
  const matches = button("Show context matches", "matches", "Sort the gallery by how strongly the context's rule matches");
  const views = { changed: h("button", "gw-btn", { textContent: "changed" }),
    original: h("button", "gw-btn", { textContent: "original" }) };
  for (const [name, b] of Object.entries(views)) b.addEventListener("click", () => send("view", name));
  const undo = button("Undo rewrite", "undo", "Take the rewrite off the model (not a paint stroke)");
  const redo = button("Redo rewrite", "redo", "Put the rewrite back on the model");
  const path = h("input", "", { type: "text", spellcheck: false });
  path.setAttribute("aria-label", "file");
  path.addEventListener("change", () => send("path", path.value));
  path.addEventListener("keydown", (e) => e.stopPropagation());
  const save = button("Save rule", "save", "Save the rewrite to the file");
  const load = button("Load rule", "load", "Load a saved rewrite from the file and apply it");
  const status = h("div", "gw-status", { role: "status" });
  const controls = h("div", "gw-col gw-re-controls", {}, [
    h("div", "gw-field", {}, [rankField, stepsField]),
    h("div", "gw-field", {}, [execute, cancel, matches]),
    h("div", "gw-field", {}, [h("span", "gw-label", { textContent: "show model" }),
      h("div", "gw-seg", {}, [views.changed, views.original]), undo, redo]),
    h("div", "gw-field", {}, [h("span", "gw-label", { textContent: "file" }), path, save, load]),
  ]);
  const note = h("div", "gw-saved-note", { textContent:
    "Saved view: it shows the editor as it was when saved; painting and rewriting need a running kernel." });
  root.append(h("div", "gw-row", {}, [painting, galleryBox]), tray.el, status, controls, note);
  el.append(root);
  const cleanupPaint = await canvasView(model, paintEl);

  function drawControls() {
    caption.textContent = model.get("canvas_caption");
    const running = model.get("running");
    if (document.activeElement !== rank) rank.value = model.get("rank");
    if (document.activeElement !== steps) steps.value = model.get("steps");
    if (document.activeElement !== path) path.value = model.get("path");
    execute.disabled = running;
    cancel.disabled = !running;
    paste.classList.toggle("gw-active", model.get("placing"));
    paste.disabled = model.get("copy_seed") === null;
    matches.disabled = !model.get("context_seeds").length;
    for (const [name, b] of Object.entries(views)) {
      const on = model.get("view") === name;
      b.classList.toggle("gw-active", on);
      b.setAttribute("aria-pressed", on);
    }
    undo.disabled = !model.get("rewrite_applied");
    redo.disabled = !model.get("can_redo");
    save.disabled = !model.get("has_rewrite");
    galleryBox.classList.toggle("gw-placing", model.get("placing"));
    status.dataset.kind = model.get("status_kind");
    status.textContent = model.get("status");
    if (saved) for (const c of root.querySelectorAll("button, select, input")) c.disabled = true;
  }
  const drawGrids = () => Promise.all([
    gallery.update(gridSpec(model, "gallery")), tray.update(gridSpec(model, "tray"))]);
  const controlTraits = ["canvas_caption", "running", "rank", "steps", "path", "placing",
    "copy_seed", "context_seeds", "view", "rewrite_applied", "can_redo", "has_rewrite",
    "status", "status_kind"];
  const handlers = Object.fromEntries(controlTraits.map((n) => [`change:${n}`, drawControls]));
  for (const n of ["gallery", "tray", "_lut", "opacity", "heat_mode"]) handlers[`change:${n}`] = drawGrids;
  for (const [event, fn] of Object.entries(handlers)) model.on(event, fn);
  drawControls();
  await drawGrids();
  return () => {
    gallery.loading = tray.loading = -1;
    photos.cleanup();
    cleanupPaint?.();
    for (const [event, fn] of Object.entries(handlers)) model.off(event, fn);
  };
}

export default { render };
