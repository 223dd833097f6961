// ImageGrid view: a GridView (see _grid_core.js) drawing this widget's traits: _images (PNG or
// raw pixels; _image_shape, encoding), _heat, _heat_shape, _lut, vmin, vmax, opacity,
// threshold, heat_mode, captions, columns, size. A click sets `clicked` = {index, x, y, n}.
// With accept_photos, image files dropped onto the grid (or chosen with "add photo…") are sent
// to Python (photoDrop in _grid_core.js); the bar shows photo_status.

const TRAITS = ["_images", "_image_shape", "encoding", "_heat", "_heat_shape", "_lut", "vmin",
  "vmax", "opacity", "threshold", "heat_mode", "captions", "columns", "size"];

async function render({ model, el }) {
  const spec = () => ({
    images: model.get("_images"), shape: model.get("_image_shape"), encoding: model.get("encoding"),
    heat: model.get("_heat"), heat_shape: model.get("_heat_shape"), lut: model.get("_lut"),
    vmin: model.get("vmin"), vmax: model.get("vmax"), opacity: model.get("opacity"),
    threshold: model.get("threshold"), mode: model.get("heat_mode"),
    captions: model.get("captions"), columns: model.get("columns"), size: model.get("size"),
  });
  const grid = new GridView("", {
    onClick(index, x, y) {
      model.set("clicked", { index, x, y, n: (model.get("clicked")?.n || 0) + 1 });
      model.save_changes();
    },
  });
  // the view's element is the grid: tests and pages find it as .gw-grid
  el.classList.add("gw-grid");
  const photos = photoDrop(model, el);
  el.append(grid.cells, grid.status, photos.el);
  grid.el = el;
  const update = () => grid.update(spec());
  for (const name of TRAITS) model.on(`change:${name}`, update);
  await update();
  return () => {
    grid.loading = -1;
    photos.cleanup();
    for (const name of TRAITS) model.off(`change:${name}`, update);
  };
}

export default { render };
