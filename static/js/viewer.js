/* The rating page's image viewer: fit and 1:1 (native pixels) views, zoom around a point (wheel,
   + and -) capped at MAX_NATIVE_ZOOM times native, drag to pan, and a micrometre scale bar when the
   study records its microns per pixel (one value per study, never per image: the bar cannot tell
   real from synthetic). Knows nothing about items or answers; rate.js drives it.

   Scales are CSS pixels per image pixel. "Native" is one image pixel per device pixel
   (1 / devicePixelRatio CSS px). "Fit" is the largest scale showing the whole image, rounded down
   to a whole number when above 1, so that every source pixel is drawn the same size. */
(function () {
  "use strict";

  const MAX_NATIVE_ZOOM = 8;
  const STEP = 1.25;
  const NICE = [1, 2, 5];

  /* The longest "nice" length (1, 2 or 5 x 10^k micrometres) whose bar is at most `maxPx` wide. */
  function niceMicrons(micronsPerCssPx, maxPx) {
    const limit = micronsPerCssPx * maxPx;
    let best = null;
    for (let k = -3; k <= 6; k++) {
      for (const n of NICE) {
        const um = n * 10 ** k;
        if (um <= limit) best = um;
      }
    }
    return best;
  }

  function formatMicrons(um) {
    if (um >= 1000) return `${um / 1000} mm`;
    return `${Number(um.toPrecision(3))} µm`;
  }

  function createViewer({ viewport, img, zoomLabel, scaleBar, micronsPerPixel }) {
    let scale = 1;
    let tx = 0;
    let ty = 0;
    let view = "fit"; // fit | native | zoom
    let drag = null;

    const size = () => ({ w: img.naturalWidth || 128, h: img.naturalHeight || 128 });
    const nativeScale = () => 1 / (window.devicePixelRatio || 1);

    function fitScale() {
      const { w, h } = size();
      const s = Math.max(1e-3, Math.min(viewport.clientWidth / w, viewport.clientHeight / h));
      return s >= 1 ? Math.floor(s) : s;
    }

    // Small patches fit at more than 8x native already: fitting is always allowed.
    const maxScale = () => Math.max(fitScale(), MAX_NATIVE_ZOOM * nativeScale());
    const minScale = () => Math.min(fitScale(), nativeScale());

    function apply() {
      img.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
      const native = scale / nativeScale();
      if (zoomLabel) {
        zoomLabel.textContent = view === "fit" ? `Fit (${fmt(native)}×)` : view === "native" ? "1:1" : `${fmt(native)}×`;
      }
      drawScaleBar();
    }

    const fmt = (x) => (x >= 10 ? x.toFixed(0) : x.toFixed(1).replace(/\.0$/, ""));

    function drawScaleBar() {
      if (!scaleBar) return;
      if (!(micronsPerPixel > 0)) {
        scaleBar.hidden = true;
        return;
      }
      const micronsPerCssPx = micronsPerPixel / scale;
      const um = niceMicrons(micronsPerCssPx, Math.min(160, viewport.clientWidth / 3));
      if (um === null) {
        scaleBar.hidden = true;
        return;
      }
      const px = um / micronsPerCssPx;
      scaleBar.hidden = false;
      scaleBar.querySelector(".bar").style.width = `${px}px`;
      scaleBar.querySelector(".label").textContent = formatMicrons(um);
      scaleBar.dataset.microns = String(um);
      scaleBar.dataset.px = String(px);
    }

    function centreAt(s) {
      const { w, h } = size();
      scale = s;
      tx = (viewport.clientWidth - w * s) / 2;
      ty = (viewport.clientHeight - h * s) / 2;
      apply();
    }

    function fit() {
      view = "fit";
      centreAt(fitScale());
    }

    function native() {
      view = "native";
      centreAt(nativeScale());
    }

    function zoomAt(factor, cx, cy) {
      const next = Math.min(maxScale(), Math.max(minScale(), scale * factor));
      if (next === scale) return;
      const k = next / scale;
      tx = cx - (cx - tx) * k;
      ty = cy - (cy - ty) * k;
      scale = next;
      view = "zoom";
      apply();
    }

    const zoomIn = () => zoomAt(STEP, viewport.clientWidth / 2, viewport.clientHeight / 2);
    const zoomOut = () => zoomAt(1 / STEP, viewport.clientWidth / 2, viewport.clientHeight / 2);

    viewport.addEventListener(
      "wheel",
      (ev) => {
        ev.preventDefault();
        const r = viewport.getBoundingClientRect();
        zoomAt(ev.deltaY < 0 ? STEP : 1 / STEP, ev.clientX - r.left, ev.clientY - r.top);
      },
      { passive: false },
    );
    viewport.addEventListener("pointerdown", (ev) => {
      if (ev.target.closest("button")) return;
      drag = { x: ev.clientX - tx, y: ev.clientY - ty };
      viewport.setPointerCapture(ev.pointerId);
      viewport.classList.add("dragging");
    });
    viewport.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      tx = ev.clientX - drag.x;
      ty = ev.clientY - drag.y;
      if (view !== "zoom") view = "zoom";
      apply();
    });
    const endDrag = () => {
      drag = null;
      viewport.classList.remove("dragging");
    };
    viewport.addEventListener("pointerup", endDrag);
    viewport.addEventListener("pointercancel", endDrag);
    window.addEventListener("resize", () => (view === "fit" ? fit() : view === "native" ? native() : apply()));

    return { fit, native, zoomIn, zoomOut, scale: () => scale, maxScale };
  }

  window.HistoViewer = { createViewer, niceMicrons, MAX_NATIVE_ZOOM };
})();
