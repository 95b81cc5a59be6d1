// The recommendations block's status line (#recs-status, a live region) for the failures htmx
// swaps nothing for: a server error, a proxy's error page, no connection, a timeout. A refused
// request (429) brings its own notice. Each request of the block clears the line first, so an
// old notice never outlives the next thing the student does.
(function () {
  "use strict";
  var MESSAGES = {
    dismiss: "“Not interested” did not go through. Try again in a moment.",
    undo: "“Undo” did not go through. Try again in a moment, or restore it under My challenges.",
    more: "More recommendations could not be loaded. Try again in a moment.",
    load: "Your recommendations could not be loaded. Try again in a moment, or open them with the link below.",
  };

  var REFUSED = "That did not work. Reload the page for a fresh list.";

  function statusLine(elt) {
    var block = elt && elt.closest ? elt.closest(".recommended") : null;
    return block ? block.querySelector("#recs-status") : null;
  }

  function kindOf(elt) {
    if (elt.closest(".recs-dismiss")) return "dismiss";
    if (elt.closest(".recs-undo")) return "undo";
    if (elt.closest(".recs-more")) return "more";
    return "load";
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var line = statusLine(event.detail.elt);
    if (line) line.textContent = "";
  });

  function failed(event) {
    var elt = event.detail.elt;
    var line = statusLine(elt);
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (!line || status === 429) return;
    // A refusal (the card's challenge is gone, say) will not go through on a retry.
    line.textContent = status >= 400 && status < 500 ? REFUSED : MESSAGES[kindOf(elt)];
  }

  // What a swap brings in with [autofocus] (a notice, the first added card) is focused here, at
  // once, and the attribute dropped. Left to the attribute, two parties focus it: the browser at
  // its next frame and htmx when it settles a moment later, the second pulling the keyboard back
  // from wherever the student had moved in between (from "Undo" to the notice before it).
  document.addEventListener("htmx:afterSwap", function () {
    var focused = document.querySelector(".recommended [autofocus]");
    if (!focused) return;
    focused.removeAttribute("autofocus");
    focused.focus();
  });

  document.addEventListener("htmx:responseError", failed);
  document.addEventListener("htmx:sendError", failed);
  document.addEventListener("htmx:timeout", failed);
})();
