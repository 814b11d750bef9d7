// The kiosk stays on a tablet all day: reload it every minute so it shows the booking of
// the moment, but never while someone is typing a PIN or writing a report.
(function () {
  "use strict";
  var PERIOD_MS = 60 * 1000;
  function busy() {
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "TEXTAREA")) return true;
    var fields = document.querySelectorAll(".kiosk input:not([type=hidden]):not([type=radio]), .kiosk textarea");
    for (var i = 0; i < fields.length; i++) if (fields[i].value) return true;
    var report = document.querySelector(".kiosk-report");
    return Boolean(report && report.open);
  }
  setInterval(function () {
    if (!busy()) window.location.replace(window.location.pathname);
  }, PERIOD_MS);
})();
