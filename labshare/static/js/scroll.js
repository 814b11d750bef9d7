// On a phone a table wider than the screen scrolls inside its card (labshare.css); a
// keyboard reaches what is off to the side only if the table can take focus. Tables that
// scroll get tabindex 0, named by their caption or the heading above them; checked again
// when the window is resized and when htmx swaps content in.
(function () {
  "use strict";
  function nameOf(table) {
    const caption = table.querySelector("caption");
    if (caption) return caption.textContent.trim();
    let before = table.previousElementSibling;
    while (before && !/^H[1-6]$/.test(before.tagName)) before = before.previousElementSibling;
    return before ? before.textContent.trim() : "";
  }
  function mark() {
    for (const table of document.querySelectorAll("table")) {
      if (table.closest(".fc")) continue;  // the calendar is its own widget
      if (table.scrollWidth > table.clientWidth + 1) {
        table.setAttribute("tabindex", "0");
        if (!table.hasAttribute("aria-label") && nameOf(table)) table.setAttribute("aria-label", nameOf(table));
      } else if (table.getAttribute("tabindex") === "0") {
        table.removeAttribute("tabindex");
      }
    }
  }
  document.addEventListener("DOMContentLoaded", mark);
  window.addEventListener("resize", mark);
  document.addEventListener("htmx:afterSwap", mark);
})();
