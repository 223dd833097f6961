// UnitBrowser view: one module for the whole widget (no ipywidgets containers), drawn from
// traits: layer, count, sorts, sort, order, labels, unit, rows, info, samples, top_samples
// (grid dicts, see _grid_core.js), heat_mode, _lut, opacity. Choosing a unit sets `unit`;
// arrow keys in the list step through units, never through the notebook's cells. Photos
// dropped onto the samples (accept_photos) go to Python: photoDrop in _grid_core.js.

async function render({ model, el }) {
  const saved = isSaved(model);
  const root = h("div", "gw-composite gw-unit-browser" + (saved ? " gw-saved" : ""));
  const heading = h("div", "gw-heading");
  const sort = h("select", "gw-ub-sort", { title: "Order of the unit list" });
  const box = h("div", "gw-unit-list");
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  const list = h("select", "gw-ub-units", { title: "Units: click one, or step with the arrow keys" });
  list.setAttribute("aria-label", "units");
  box.append(list);
  const modes = { highlight: h("button", "gw-btn", { textContent: "highlight", title:
    "The region above the unit's threshold stays bright inside an outline; the rest is dimmed" }),
    colormap: h("button", "gw-btn", { textContent: "colour map", title:
    "The whole activation as colours over the image" }) };
  const modeBar = h("div", "gw-seg", {}, [modes.highlight, modes.colormap]);
  const side = h("div", "gw-col gw-ub-side", {}, [heading,
    h("label", "gw-field", {}, [h("span", "gw-label", { textContent: "order" }), sort]), box,
    h("div", "gw-field", {}, [h("span", "gw-label", { textContent: "heatmap" }), modeBar])]);
  const info = h("div", "gw-ub-info");
  const samples = new GridView("samples", { title: "samples" });
  const top = new GridView("top", { title: "top-activating samples" });
  const photos = photoDrop(model, samples.el);
  const main = h("div", "gw-col gw-grow gw-ub-main", {}, [info, samples.el, photos.el, top.el]);
  const note = h("div", "gw-saved-note", { textContent:
    "Saved view: it shows the unit chosen when it was saved; choosing others needs a running kernel." });
  root.append(h("div", "gw-row", {}, [side, main]), note);
  el.append(root);

  const send = (name, value) => { model.set(name, value); model.save_changes(); };
  sort.addEventListener("change", () => send("sort", sort.value));
  list.addEventListener("change", () => send("unit", Number(list.value)));
  for (const [name, button] of Object.entries(modes)) {
    button.addEventListener("click", () => send("heat_mode", name));
  }
  function onKey(event) {
    if (event.target !== list) return;
    event.stopPropagation();
    const step = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    const i = Math.min(Math.max(list.selectedIndex + step, 0), list.options.length - 1);
    if (i !== list.selectedIndex) {
      list.selectedIndex = i;
      send("unit", Number(list.value));
    }
  }
  window.addEventListener("keydown", onKey, true);

  function drawControls() {
    heading.textContent = `${model.get("layer")} \u00b7 ${model.get("count")} units`;
    sort.replaceChildren(...model.get("sorts").map(([label, value]) => h("option", "", { value, textContent: label })));
    sort.value = model.get("sort");
    list.size = model.get("rows");
    const order = model.get("order"), labels = model.get("labels");
    list.replaceChildren(...order.map((u, i) => h("option", "", { value: String(u), textContent: labels[i] ?? `unit ${u}` })));
    list.value = String(model.get("unit"));
    for (const [name, button] of Object.entries(modes)) {
      const on = model.get("heat_mode") === name;
      button.classList.toggle("gw-active", on);
      button.setAttribute("aria-pressed", on);
    }
    if (saved) for (const c of root.querySelectorAll("button, select, input")) c.disabled = true;
  }
  const drawGrids = () => Promise.all([
    samples.update(gridSpec(model, "samples")), top.update(gridSpec(model, "top_samples"))]);
  const drawInfo = () => { info.textContent = model.get("info"); };
  const handlers = {
    "change:sorts": drawControls, "change:sort": drawControls, "change:order": drawControls,
    "change:labels": drawControls, "change:rows": drawControls, "change:layer": drawControls,
    "change:unit": () => { list.value = String(model.get("unit")); },
    "change:heat_mode": () => { drawControls(); drawGrids(); },
    "change:samples": drawGrids, "change:top_samples": drawGrids, "change:_lut": drawGrids,
    "change:opacity": drawGrids, "change:info": drawInfo,
  };
  for (const [event, fn] of Object.entries(handlers)) model.on(event, fn);
  drawControls();
  drawInfo();
  await drawGrids();
  return () => {
    samples.loading = top.loading = -1;
    photos.cleanup();
    window.removeEventListener("keydown", onKey, true);
    for (const [event, fn] of Object.entries(handlers)) model.off(event, fn);
  };
}

export default { render };
