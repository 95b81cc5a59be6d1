// A table or chart wider than a phone's screen scrolls sideways in its box. Keyboard users scroll
// it with the arrow keys once it has the focus, so a box whose content overflows is made
// focusable, as a region named after what it holds; one that fits is left alone (no needless
// tab stop). Checked on load, on resize and after htmx swaps content in.
(function () {
  "use strict";

  function label(box) {
    var image = box.querySelector("img[alt]");
    if (image) return image.getAttribute("alt") + " (scrolls sideways)";
    var table = box.querySelector("table");
    var named = table && table.getAttribute("aria-labelledby");
    var source = named && document.getElementById(named);
    var node = box.previousElementSibling;
    while (!source && node) {
      if (/^H[1-6]$/.test(node.tagName)) source = node;
      node = node.previousElementSibling;
    }
    var text = source ? source.textContent.trim() : "";
    return (text || "Table") + " (scrolls sideways)";
  }

  function update() {
    document.querySelectorAll(".table-wrap, .chart-scroll").forEach(function (box) {
      var overflows = box.scrollWidth > box.clientWidth + 1;
      if (overflows && !box.hasAttribute("tabindex")) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", label(box));
        box.dataset.scrollable = "made";
      } else if (!overflows && box.dataset.scrollable === "made") {
        box.removeAttribute("tabindex");
        box.removeAttribute("role");
        box.removeAttribute("aria-label");
        delete box.dataset.scrollable;
      }
    });
  }

  var pending = null;
  function later() {
    if (pending) window.cancelAnimationFrame(pending);
    pending = window.requestAnimationFrame(function () { pending = null; update(); });
  }

  document.addEventListener("DOMContentLoaded", update);
  window.addEventListener("load", update);  // charts are images: their width is known by then
  window.addEventListener("resize", later);
  document.addEventListener("htmx:afterSettle", later);
})();
