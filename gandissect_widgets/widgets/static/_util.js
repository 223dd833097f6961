// Shared helpers, bundled in front of every widget's ES module (see widgets/_bundle.py).

const bytesOf = (v) =>
  v instanceof DataView ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength)
  : v instanceof ArrayBuffer ? new Uint8Array(v)
  : v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : new Uint8Array(0);

function h(tag, className, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  if (className) node.className = className;
  node.append(...children);
  return node;
}

// True when no kernel stands behind the model: a saved page (the HTML widget manager, which
// nbconvert and save_html pages use, has a `loader` and no kernel) or a notebook whose kernel
// is gone (JupyterLab, Notebook 7 and VS Code managers expose `kernel`). Other managers
// (marimo's, Colab's) count as live.
function isSaved(model) {
  const wm = model.widget_manager;
  if (!wm) return false;
  if ("kernel" in wm) return !wm.kernel;
  return "loader" in wm;
}

// A view of `model` whose trait names are mapped: sub-views written for a standalone widget
// (paint canvas) run on a composite's prefixed traits. `names` maps the sub-view's trait name
// to the composite's; sent messages carry `part`.
function mapped(model, names, part) {
  const name = (n) => names[n] ?? n;
  const handlers = [];
  return {
    get: (n) => model.get(name(n)),
    set: (n, v) => model.set(name(n), v),
    save_changes: () => model.save_changes(),
    send: (content) => model.send({ ...content, part }),
    on(event, fn) {
      const real = event.replace(/^change:(.*)$/, (_, n) => `change:${name(n)}`);
      handlers.push([real, fn]);
      model.on(real, fn);
    },
    off(event, fn) {
      const real = event.replace(/^change:(.*)$/, (_, n) => `change:${name(n)}`);
      model.off(real, fn);
    },
    widget_manager: model.widget_manager,
  };
}

// Ask Python for an action (a button press): a counter in `_action` so that pressing the same
// button twice is two changes. Plain traits work in every frontend (marimo included).
function act(model, name, args = {}) {
  const n = (model.get("_action")?.n || 0) + 1;
  model.set("_action", { name, n, ...args });
  model.save_changes();
}

// Set a trait from a continuous control (slider drag): the first value goes at once, later
// ones at most once per animation frame; the newest value wins, and it always arrives.
function throttled(model, trait) {
  let frame = 0, value, last = -Infinity;
  const flush = () => {
    frame = 0;
    last = performance.now();
    model.set(trait, value);
    model.save_changes();
  };
  return (v) => {
    value = v;
    if (frame) return;
    if (performance.now() - last >= 16) flush();
    else frame = requestAnimationFrame(flush);
  };
}

// A labelled range slider whose value shows beside it.
function slider(label, { min, max, step, format = (v) => v }) {
  const input = h("input", "gw-range", { type: "range", min, max, step });
  const out = h("output", "gw-range-value");
  const wrap = h("label", "gw-field gw-slider", {}, [h("span", "gw-label", { textContent: label }), input, out]);
  const show = () => { out.textContent = format(Number(input.value)); };
  input.addEventListener("input", show);
  return { el: wrap, input, set(v) { input.value = v; show(); } };
}
