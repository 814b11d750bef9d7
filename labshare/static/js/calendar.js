// The instrument page's week calendar: busy and free time from the availability API,
// drawn in the network's time zone whatever the browser's zone is; dragging fills the
// booking form.
(function () {
  "use strict";
  const el = document.getElementById("calendar");
  if (!el || !window.FullCalendar) return;
  const zone = el.dataset.zone;
  const id = el.dataset.instrument;
  const step = parseInt(el.dataset.step, 10) || 30;
  const pad = (n) => String(n).padStart(2, "0");

  // Wall-clock parts of an instant in `zone`.
  const partsFormat = new Intl.DateTimeFormat("en-CA", {
    timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  function wallOf(date) {
    const p = {};
    for (const part of partsFormat.formatToParts(date)) p[part.type] = part.value;
    return `${p.year}-${p.month}-${p.day}T${p.hour}:${p.minute}:${p.second}`;
  }
  function offsetMs(date) {
    return Date.parse(wallOf(date) + "Z") - date.getTime();
  }
  // A wall-clock time in `zone` ("2026-12-01T09:00:00") as a real instant.
  function instantOf(wall) {
    const guess = Date.parse(wall.replace(/Z$/, "") + "Z");
    let t = guess - offsetMs(new Date(guess));
    const again = guess - offsetMs(new Date(t));
    if (again !== t) t = again;
    return new Date(t);
  }
  // FullCalendar runs in "UTC" and we hand it wall-clock times tagged Z, so it shows
  // the network's zone: the page and the calendar agree for everyone.
  const wallZ = (iso) => wallOf(new Date(iso)) + "Z";
  const toInput = (date) =>
    `${date.getUTCFullYear()}-${pad(date.getUTCMonth() + 1)}-${pad(date.getUTCDate())}T${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}`;

  const errorBox = document.getElementById("calendar-error");
  const labels = { booking: el.dataset.labelBooking, blackout: el.dataset.labelBlackout, closed: el.dataset.labelClosed };

  function loadEvents(info, success, failure) {
    const start = instantOf(info.startStr).toISOString();
    const end = instantOf(info.endStr).toISOString();
    fetch(`/api/v1/instruments/${id}/availability?start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}`,
      { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))))
      .then((body) => {
        if (errorBox) errorBox.hidden = true;
        const events = [];
        for (const f of body.free || []) {
          events.push({ start: wallZ(f.start), end: wallZ(f.end), display: "background", classNames: ["ev-free"] });
        }
        for (const b of body.busy || []) {
          const kind = b.kind || "booking";
          const start = wallZ(b.start);
          const end = wallZ(b.end);
          // Busy time is drawn behind the grid, so one can still drag over it: the server
          // then explains the refusal and offers alternatives or the waitlist.
          const title = kind === "closed" ? "" : `${labels[kind] || kind} ${start.slice(11, 16)}–${end.slice(11, 16)}`;
          events.push({ start, end, title, display: "background", classNames: ["ev-" + kind] });
        }
        success(events);
      })
      .catch((err) => {
        if (errorBox) { errorBox.textContent = el.dataset.error; errorBox.hidden = false; }
        failure(err);
      });
  }

  const narrow = window.matchMedia("(max-width: 40rem)").matches;
  const calendar = new FullCalendar.Calendar(el, {
    timeZone: "UTC",
    now: () => wallOf(new Date()) + "Z",
    locale: el.dataset.lang === "zh" ? "zh-cn" : "en-gb",
    initialView: narrow ? "timeGridDay" : "timeGridWeek",
    initialDate: el.dataset.initial || undefined,
    headerToolbar: { left: "prev,next today", center: "title", right: narrow ? "" : "timeGridWeek,timeGridDay" },
    firstDay: 1,
    allDaySlot: false,
    nowIndicator: true,
    height: "auto",
    slotMinTime: el.dataset.from || "06:00:00",
    slotMaxTime: el.dataset.to || "23:00:00",
    slotDuration: { minutes: step },
    snapDuration: { minutes: step },
    expandRows: true,
    stickyHeaderDates: false,
    selectable: el.dataset.selectable === "true",
    selectMirror: true,
    longPressDelay: 300,
    events: loadEvents,
    // Only times still ahead can be picked.
    selectAllow: (info) => info.start.getTime() >= Date.parse(wallOf(new Date()) + "Z"),
    select: (info) => {
      const start = document.getElementById("start");
      const end = document.getElementById("end");
      if (!start || !end) return;
      start.value = toInput(info.start);
      end.value = toInput(info.end);
      const purpose = document.getElementById("purpose");
      (purpose || start).focus();
    },
  });
  calendar.render();
  // A booking made, moved or cancelled by htmx redraws the calendar.
  document.body.addEventListener("booking-changed", () => calendar.refetchEvents());
  window.labshareCalendar = calendar;
})();
