"""Filled buttons (the active mode, Apply, Execute) keep a readable label when hovered: the
computed text and background colours meet WCAG AA (4.5:1), at rest and hovered."""

from __future__ import annotations

import pytest

from gandissect_widgets.widgets import AblationPanel, RuleEditor

from .test_esm_composites import CompositeView

pytestmark = pytest.mark.browser

# The computed colours of an element as opaque sRGB (0-255): a canvas resolves any CSS colour
# syntax (rgb(), color(srgb ...), color-mix results); a translucent background is composited
# over the first opaque one behind it (the page: white, or the dark harness background).
_COLOURS = """el => {
  const ctx = new OffscreenCanvas(1, 1).getContext("2d");
  const rgba = (css) => {
    ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = "#000"; ctx.fillStyle = css;
    ctx.fillRect(0, 0, 1, 1); return [...ctx.getImageData(0, 0, 1, 1).data];
  };
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor;
    if (c && c !== "rgba(0, 0, 0, 0)" && c !== "transparent") layers.push(c);
  }
  layers.push("#fff");
  let bg = [255, 255, 255];
  for (const css of layers.reverse()) {
    const [r, g, b, a] = css === "#fff" ? [255, 255, 255, 255] : rgba(css);
    ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = css; ctx.fillRect(0, 0, 1, 1);
    const alpha = a / 255;
    bg = [r, g, b].map((v, i) => v * alpha + bg[i] * (1 - alpha));
  }
  return { fg: rgba(getComputedStyle(el).color).slice(0, 3), bg,
           opacity: +getComputedStyle(el).opacity };
}"""


def _luminance(rgb) -> float:
    def lin(c):
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = map(lin, rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg, bg) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_formula():
    assert contrast((0, 0, 0), (255, 255, 255)) == pytest.approx(21)
    assert contrast((255, 255, 255), (240, 240, 240)) < 1.2


def test_filled_buttons_stay_readable_when_hovered(page, gen_session):
    panel = AblationPanel(gen_session, "layer2", units=list(range(16)), seeds=[0, 1], size=32)
    editor = RuleEditor(gen_session, "layer2", seeds=range(2), stat_samples=16, cache=False)
    checked = []
    try:
        for widget in (panel, editor):
            view = CompositeView(page, widget)
            view.flush()
            buttons = view.el.locator(
                "button.gw-active:enabled:visible, button.gw-primary:enabled:visible"
            )
            for i in range(buttons.count()):
                button = buttons.nth(i)
                page.mouse.move(0, 0)
                rest = button.evaluate(_COLOURS)
                button.hover()
                page.wait_for_timeout(50)
                hovered = button.evaluate(_COLOURS)
                label = button.inner_text()
                for state, c in (("at rest", rest), ("hovered", hovered)):
                    ratio = contrast(c["fg"], c["bg"])
                    checked.append((label, state, round(ratio, 2)))
                    assert ratio >= 4.5, f"{label!r} {state}: {c} contrast {ratio:.2f} < 4.5"
    finally:
        panel.close()
        editor.close()
    labels = {label for label, *_ in checked}
    assert len(labels) >= 3, checked  # e.g. the panel's mode, Apply, the editor's tool
