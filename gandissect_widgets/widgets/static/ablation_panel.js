// AblationPanel view: one module for the whole widget. Traits: layer, count, concepts,
// concept ("" = by number), top, top_max, units (text), strength, mode, region, applied,
// has_browser, status, status_kind, original, edited (grid dicts), canvas_* (paint canvas),
// canvas_caption. Buttons set `_action` (apply, unapply, add_unit). The strength slider sends
// at most one value per animation frame while dragged; the newest value wins. Photos dropped
// onto the original samples (accept_photos) go to Python: photoDrop in _grid_core.js.

async function render({ model, el }) {
  const saved = isSaved(model);
  const root = h("div", "gw-composite gw-ablation-panel" + (saved ? " gw-saved" : ""));
  const send = (name, value) => { model.set(name, value); model.save_changes(); };

  const concept = h("select", "gw-ab-concept", { title: "Take the top units for a concept (needs a dissection)" });
  concept.setAttribute("aria-label", "concept");
  const top = slider("top", { min: 1, max: 40, step: 1 });
  top.input.setAttribute("aria-label", "top");
  const units = h("input", "gw-ab-units", { type: "text", placeholder: "e.g. 3, 12-15", spellcheck: false });
  units.setAttribute("aria-label", "units");
  const strength = slider("strength", { min: 0, max: 1, step: 0.01, format: (v) => `${Math.round(v * 100)}%` });
  strength.input.setAttribute("aria-label", "strength");
  const modes = { remove: h("button", "gw-btn", { textContent: "remove", title: "Switch the units off" }),
    insert: h("button", "gw-btn", { textContent: "insert", title: "Set the units to their high level (GANPaint's draw)" }) };
  const region = h("input", "gw-ab-region", { type: "checkbox" });
  const regionLabel = h("label", "gw-field", {}, [region, h("span", "", { textContent: "only in a painted region" })]);
  const addUnit = h("button", "gw-btn", { textContent: "+ the browser's unit", title: "Add the unit selected in the UnitBrowser" });
  const apply = h("button", "gw-btn gw-primary gw-ab-apply");
  const status = h("div", "gw-status", { role: "status" });
  const controls = h("div", "gw-col gw-ab-controls", {}, [
    h("label", "gw-field", {}, [h("span", "gw-label", { textContent: "concept" }), concept]),
    top.el,
    h("label", "gw-field", {}, [h("span", "gw-label", { textContent: "units" }), units]),
    strength.el,
    h("div", "gw-field", {}, [h("span", "gw-label", { textContent: "mode" }),
      h("div", "gw-seg", {}, [modes.remove, modes.insert])]),
    regionLabel,
    h("div", "gw-field", {}, [apply, addUnit]),
  ]);
  const paintEl = h("div", "gw-ab-paint");
  const caption = h("div", "gw-hint gw-ab-caption");
  const paintBox = h("div", "gw-col gw-ab-paintbox", {}, [caption, paintEl]);
  const original = new GridView("original", { title: "original" });
  const edited = new GridView("edited", { title: "edited" });
  const note = h("div", "gw-saved-note", { textContent:
    "Saved view: it shows the edit as it was when saved; the controls need a running kernel." });
  const photos = photoDrop(model, original.el);
  root.append(
    h("div", "gw-row", {}, [controls, paintBox]),
    status,
    h("div", "gw-row gw-ab-grids", {}, [original.el, edited.el]),
    photos.el,
    note,
  );
  el.append(root);
  const cleanupPaint = await canvasView(model, paintEl);

  concept.addEventListener("change", () => send("concept", concept.value));
  top.input.addEventListener("input", () => send("top", Number(top.input.value)));
  units.addEventListener("change", () => send("units", units.value));
  units.addEventListener("keydown", (e) => { e.stopPropagation(); if (e.key === "Enter") send("units", units.value); });
  const sendStrength = throttled(model, "strength");
  strength.input.addEventListener("input", () => sendStrength(Number(strength.input.value)));
  for (const [name, button] of Object.entries(modes)) button.addEventListener("click", () => send("mode", name));
  region.addEventListener("change", () => send("region", region.checked));
  addUnit.addEventListener("click", () => act(model, "add_unit"));
  apply.addEventListener("click", () => act(model, model.get("applied") ? "unapply" : "apply"));

  function drawControls() {
    const concepts = model.get("concepts");
    concept.replaceChildren(h("option", "", { value: "", textContent: "(by number)" }),
      ...concepts.map((c) => h("option", "", { value: c, textContent: c })));
    concept.value = model.get("concept");
    concept.disabled = saved || !concepts.length;
    top.input.max = model.get("top_max");
    top.set(model.get("top"));
    // "top" picks how many of the concept's units: meaningless when units are typed
    top.input.disabled = saved || !model.get("concept");
    top.el.classList.toggle("gw-off", !model.get("concept"));
    top.el.title = model.get("concept") ? "How many of the concept's top units" : "Pick a concept to use this";
    if (document.activeElement !== units) units.value = model.get("units");
    units.title = model.get("units") || "unit numbers, e.g. 3, 12-15";  // the whole list, however long
    if (document.activeElement !== strength.input) strength.set(model.get("strength"));
    for (const [name, button] of Object.entries(modes)) {
      const on = model.get("mode") === name;
      button.classList.toggle("gw-active", on);
      button.setAttribute("aria-pressed", on);
    }
    region.checked = model.get("region");
    paintBox.style.display = model.get("region") ? "" : "none";
    caption.textContent = model.get("canvas_caption");
    addUnit.style.display = model.get("has_browser") ? "" : "none";
    const applied = model.get("applied");
    apply.textContent = applied ? "Remove from session" : "Apply";
    apply.title = applied ? "Take this edit off the Session" : "Put this edit on the Session: every widget and later code see it";
    apply.classList.toggle("gw-primary", !applied);
    apply.disabled = saved || (!applied && model.get("status_kind") !== "preview");
    status.dataset.kind = model.get("status_kind");
    const badge = { applied: "applied", preview: "preview", error: "error" }[model.get("status_kind")];
    status.replaceChildren(...(badge ? [h("span", "gw-badge", { textContent: badge })] : []),
      model.get("status").replace(/^(APPLIED|PREVIEW): /, ""));
    if (saved) for (const c of root.querySelectorAll("button, select, input")) c.disabled = true;
  }
  const drawGrids = () => Promise.all([
    original.update(gridSpec(model, "original")), edited.update(gridSpec(model, "edited"))]);
  const controlTraits = ["concepts", "concept", "top", "top_max", "units", "strength", "mode",
    "region", "applied", "has_browser", "status", "status_kind", "canvas_caption"];
  const handlers = Object.fromEntries(controlTraits.map((n) => [`change:${n}`, drawControls]));
  for (const n of ["original", "edited", "_lut", "opacity", "heat_mode"]) handlers[`change:${n}`] = drawGrids;
  for (const [event, fn] of Object.entries(handlers)) model.on(event, fn);
  drawControls();
  await drawGrids();
  return () => {
    original.loading = edited.loading = -1;
    photos.cleanup();
    cleanupPaint?.();
    for (const [event, fn] of Object.entries(handlers)) model.off(event, fn);
  };
}

export default { render };
