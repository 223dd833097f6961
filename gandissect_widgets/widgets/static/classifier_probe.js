// ClassifierProbe view: one module for the whole widget. Traits: layer, classes, sample, source,
// probs, probs_preview (bars: the preview shown over the Session's state), chosen, units (rows),
// heat (grid of unit heatmaps), steer_class, steer_k, steer_value, applied, attack_target,
// attack_eps, attack_kind, attack_state, attack_progress, attack_text, attack_grid, status,
// status_kind, canvas_* (the sketch is painted onto the picture). Buttons set `_action`
// (apply, unapply, attack, cancel_attack). Photos dropped onto the picture replace it.

async function render({ model, el }) {
  const saved = isSaved(model);
  const root = h("div", "gw-composite gw-classifier-probe" + (saved ? " gw-saved" : ""));
  const send = (name, value) => { model.set(name, value); model.save_changes(); };
  const select = (label, empty) => {
    const s = h("select", "gw-cp-" + label.replace(/\W+/g, "-"));
    s.setAttribute("aria-label", label);
    s.dataset.empty = empty ?? "";
    return s;
  };
  const fill = (s, value) => {
    const names = model.get("classes");
    const opts = s.dataset.empty ? [h("option", "", { value: "", textContent: s.dataset.empty })] : [];
    s.replaceChildren(...opts, ...names.map((c) => h("option", "", { value: c, textContent: c })));
    s.value = value;
  };

  const sample = h("input", "gw-cp-sample", { type: "number", min: 0, step: 1 });
  sample.setAttribute("aria-label", "sample");
  const paintEl = h("div", "gw-cp-paint");
  const source = h("div", "gw-hint gw-cp-source");
  const bars = h("div", "gw-cp-bars", { role: "list" });
  const legend = h("div", "gw-hint gw-cp-legend");
  const chosen = select("explain class", "(predicted only)");
  const steerClass = select("steer towards", "(no steering)");
  const steerK = slider("k units", { min: 1, max: 40, step: 1 });
  steerK.input.setAttribute("aria-label", "k units");
  const steerValue = slider("strength", { min: 0, max: 8, step: 0.25, format: (v) => `${v}x high` });
  steerValue.input.setAttribute("aria-label", "strength");
  const apply = h("button", "gw-btn gw-primary gw-cp-apply");
  const target = select("attack target");
  const eps = slider("eps (levels)", { min: 1, max: 16, step: 1, format: (v) => `${v}/255` });
  eps.input.setAttribute("aria-label", "eps");
  const kinds = { units: h("button", "gw-btn", { textContent: "through units", title: "A loss on 10 target units raised and 10 source units lowered, none on the logits" }),
    class: h("button", "gw-btn", { textContent: "on the class", title: "Maximise the target class's log-probability" }) };
  const run = h("button", "gw-btn gw-primary gw-cp-attack", { textContent: "Attack" });
  const cancel = h("button", "gw-btn gw-cp-cancel", { textContent: "cancel" });
  const progress = h("progress", "gw-cp-progress", { max: 1, value: 0 });
  const attackText = h("div", "gw-hint gw-cp-attack-text", { role: "status" });
  const status = h("div", "gw-status", { role: "status" });
  const unitGrid = new GridView("units", { title: "units that carry the prediction" });
  const attackGrid = new GridView("attack", { title: "attack" });
  const note = h("div", "gw-saved-note", { textContent:
    "Saved view: it shows the probe as it was when saved; the controls need a running kernel." });
  const photos = photoDrop(model, paintEl);
  const field = (label, node) => h("label", "gw-field", {}, [h("span", "gw-label", { textContent: label }), node]);
  const left = h("div", "gw-col gw-cp-input", {}, [field("sample", sample), source, paintEl, photos.el]);
  const right = h("div", "gw-col gw-cp-controls", {}, [
    legend, bars, field("explain", chosen),
    h("div", "gw-cp-box", {}, [field("steer", steerClass), steerK.el, steerValue.el, h("div", "gw-field", {}, [apply])]),
    h("div", "gw-cp-box", {}, [field("target", target), eps.el,
      h("div", "gw-field", {}, [h("span", "gw-label", { textContent: "attack" }), h("div", "gw-seg", {}, [kinds.units, kinds.class])]),
      h("div", "gw-field", {}, [run, cancel, progress]), attackText]),
  ]);
  root.append(h("div", "gw-row", {}, [left, right]), status,
    h("div", "gw-row gw-cp-grids", {}, [unitGrid.el, attackGrid.el]), note);
  el.append(root);
  const cleanupPaint = await canvasView(model, paintEl);

  sample.addEventListener("change", () => send("sample", Number(sample.value)));
  sample.addEventListener("keydown", (e) => e.stopPropagation());
  chosen.addEventListener("change", () => send("chosen", chosen.value));
  steerClass.addEventListener("change", () => send("steer_class", steerClass.value));
  const sendK = throttled(model, "steer_k"), sendValue = throttled(model, "steer_value");
  steerK.input.addEventListener("input", () => sendK(Number(steerK.input.value)));
  steerValue.input.addEventListener("input", () => sendValue(Number(steerValue.input.value)));
  apply.addEventListener("click", () => act(model, model.get("applied") ? "unapply" : "apply"));
  target.addEventListener("change", () => send("attack_target", target.value));
  eps.input.addEventListener("change", () => send("attack_eps", Number(eps.input.value)));
  for (const [name, b] of Object.entries(kinds)) b.addEventListener("click", () => send("attack_kind", name));
  run.addEventListener("click", () => act(model, "attack"));
  cancel.addEventListener("click", () => act(model, "cancel_attack"));

  // Grey: without this probe's steering (the Session as it is while previewing; the Session
  // less the applied edit once applied); blue: with it. The figure reads "was -> now".
  function drawBars() {
    const names = model.get("classes"), base = model.get("probs"), shown = model.get("probs_preview");
    const best = shown.indexOf(Math.max(...shown));
    const pct = (v) => `${(100 * v).toFixed(1)}%`;
    const moved = names.some((_, i) => pct(shown[i] ?? 0) !== pct(base[i] ?? 0));
    const applied = model.get("applied");
    legend.textContent = !moved ? "class probabilities"
      : applied ? "grey: without this steering; blue: with it (applied)"
        : "grey: without the preview; blue: with it";
    bars.replaceChildren(...names.map((c, i) => {
      const p = shown[i] ?? 0, b = base[i] ?? 0;
      const value = pct(p) === pct(b) ? pct(p) : `${pct(b)} \u2192 ${pct(p)}`;
      const row = h("div", "gw-cp-bar" + (i === best ? " gw-cp-best" : ""), { role: "listitem" }, [
        h("span", "gw-cp-name", { textContent: c }),
        h("span", "gw-cp-track", {}, [
          h("span", "gw-cp-base", { style: `width:${(100 * b).toFixed(1)}%` }),
          h("span", "gw-cp-fill", { style: `width:${(100 * p).toFixed(1)}%` })]),
        h("span", "gw-cp-value", { textContent: value, title: moved ? `without ${applied ? "this steering" : "the preview"} ${pct(b)}, with it ${pct(p)}` : "" })]);
      row.dataset.cls = c;
      row.dataset.p = p;
      return row;
    }));
  }
  function drawControls() {
    if (document.activeElement !== sample) sample.value = model.get("sample");
    source.textContent = `showing ${model.get("source")}: draw on it to sketch, or drop a photo`;
    fill(chosen, model.get("chosen"));
    fill(steerClass, model.get("steer_class"));
    fill(target, model.get("attack_target"));
    if (document.activeElement !== steerK.input) steerK.set(model.get("steer_k"));
    if (document.activeElement !== steerValue.input) steerValue.set(model.get("steer_value"));
    if (document.activeElement !== eps.input) eps.set(model.get("attack_eps"));
    for (const [name, b] of Object.entries(kinds)) {
      const on = model.get("attack_kind") === name;
      b.classList.toggle("gw-active", on);
      b.setAttribute("aria-pressed", on);
    }
    const applied = model.get("applied"), kind = model.get("status_kind");
    apply.textContent = applied ? "Remove from session" : "Apply";
    apply.disabled = saved || (!applied && kind !== "preview");
    const running = model.get("attack_state") === "running";
    run.disabled = saved || running;
    cancel.hidden = !running;
    progress.value = model.get("attack_progress");
    progress.hidden = !running;
    attackText.dataset.state = model.get("attack_state");
    attackText.textContent = model.get("attack_text");
    status.dataset.kind = kind;
    const badge = { applied: "applied", preview: "preview", error: "error" }[kind];
    status.replaceChildren(...(badge ? [h("span", "gw-badge", { textContent: badge })] : []),
      model.get("status").replace(/^(APPLIED|PREVIEW): /, ""));
    if (saved) for (const c of root.querySelectorAll("button, select, input")) c.disabled = true;
  }
  const drawGrids = () => Promise.all([unitGrid.update(gridSpec(model, "heat")),
    attackGrid.update({ ...gridSpec(model, "attack_grid") })]);
  const handlers = {};
  for (const n of ["classes", "sample", "source", "chosen", "steer_class", "steer_k", "steer_value",
    "applied", "attack_target", "attack_eps", "attack_kind", "attack_state", "attack_progress",
    "attack_text", "status", "status_kind"]) handlers[`change:${n}`] = drawControls;
  for (const n of ["probs", "probs_preview"]) handlers[`change:${n}`] = drawBars;
  handlers["change:applied"] = () => { drawControls(); drawBars(); };
  for (const n of ["heat", "attack_grid", "_lut", "opacity", "heat_mode"]) handlers[`change:${n}`] = drawGrids;
  for (const [event, fn] of Object.entries(handlers)) model.on(event, fn);
  drawControls();
  drawBars();
  await drawGrids();
  return () => {
    unitGrid.loading = attackGrid.loading = -1;
    photos.cleanup();
    cleanupPaint?.();
    for (const [event, fn] of Object.entries(handlers)) model.off(event, fn);
  };
}

export default { render };
