// UnitList: a keyboard-friendly list of units. Arrow keys step through it without the
// notebook's own shortcuts stealing them (data-lm-suppress-shortcuts).
function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "gw-unit-list";
  box.setAttribute("data-lm-suppress-shortcuts", "true");
  const select = document.createElement("select");
  select.size = model.get("rows");
  box.appendChild(select);
  el.appendChild(box);

  function draw() {
    select.replaceChildren(
      ...model.get("labels").map((label, i) => {
        const option = document.createElement("option");
        option.value = String(model.get("units")[i]);
        option.textContent = label;
        return option;
      }),
    );
    select.value = String(model.get("value"));
  }
  function choose(value) {
    model.set("value", Number(value));
    model.save_changes();
  }
  select.addEventListener("change", () => choose(select.value));
  // Arrow keys step through the units here, never through the notebook's cells: the
  // frontends handle keys on the way down (capture), so listen at the window, first.
  function onKey(event) {
    if (event.target !== select) return;
    event.stopPropagation();
    const step = { ArrowDown: 1, ArrowUp: -1 }[event.key];
    if (!step) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    const i = Math.min(Math.max(select.selectedIndex + step, 0), select.options.length - 1);
    if (i !== select.selectedIndex) {
      select.selectedIndex = i;
      choose(select.value);
    }
  }
  window.addEventListener("keydown", onKey, true);
  model.on("change:labels", draw);
  model.on("change:units", draw);
  model.on("change:value", () => {
    select.value = String(model.get("value"));
  });
  model.on("change:rows", () => {
    select.size = model.get("rows");
  });
  draw();
  return () => {
    window.removeEventListener("keydown", onKey, true);
    box.remove();
  };
}

export default { render };
