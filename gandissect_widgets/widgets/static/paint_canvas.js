// PaintCanvas view: the paint view of _paint_core.js on this widget's own traits.

async function render({ model, el }) {
  return paintView({ model, el });
}

export default { render };
