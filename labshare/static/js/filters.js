// On a phone the catalog's extra filters start folded (unless one is in use), so the
// results are on the first screen; on a wide screen they stay open and unfoldable.
(function () {
  "use strict";
  if (!window.matchMedia("(max-width: 40rem)").matches) return;
  for (const box of document.querySelectorAll("details[data-fold-narrow='yes']")) {
    box.open = false;
  }
})();
