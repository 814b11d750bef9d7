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
  const labels = {
    booking: el.dataset.labelBooking, blackout: el.dataset.labelBlackout,
    closed: el.dataset.labelClosed, pending: el.dataset.labelPending,
    mine: el.dataset.labelMine, minePending: el.dataset.labelMinePending,
  };
  const leadMs = (parseInt(el.dataset.lead, 10) || 0) * 60000;
  const hhmm = (wall) => wall.slice(11, 16);

  const getJson = (url) =>
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))));

  // The viewer's own active bookings of this instrument in the window (signed in only).
  function loadMine(start, end) {
    if (el.dataset.mine !== "true") return Promise.resolve([]);
    const url = `/api/v1/bookings?instrument_id=${id}&start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}&limit=200`;
    return getJson(url)
      .then((body) => (body.items || []).filter((b) => b.status === "confirmed" || b.status === "pending"))
      .catch(() => []);
  }

  function loadEvents(info, success, failure) {
    const start = instantOf(info.startStr).toISOString();
    const end = instantOf(info.endStr).toISOString();
    const availability = getJson(`/api/v1/instruments/${id}/availability?start=${encodeURIComponent(start)}&end=${encodeURIComponent(end)}`);
    Promise.all([availability, loadMine(start, end)])
      .then(([body, mine]) => {
        if (errorBox) errorBox.hidden = true;
        // Time already gone, or inside the lead time, cannot be booked: never painted free.
        const bookableFrom = wallOf(new Date(Date.now() + leadMs)) + "Z";
        const events = [];
        if (info.startStr < bookableFrom) {
          events.push({ start: info.startStr, end: bookableFrom < info.endStr ? bookableFrom : info.endStr,
                        display: "background", classNames: ["ev-past"] });
        }
        for (const f of body.free || []) {
          const fStart = wallZ(f.start);
          const fEnd = wallZ(f.end);
          if (fEnd <= bookableFrom) continue;
          events.push({ start: fStart < bookableFrom ? bookableFrom : fStart, end: fEnd,
                        display: "background", classNames: ["ev-free"] });
        }
        const own = new Set(mine.map((b) => `${wallZ(b.start)}|${wallZ(b.end)}`));
        for (const b of body.busy || []) {
          const kind = b.kind || "booking";
          const start = wallZ(b.start);
          const end = wallZ(b.end);
          if (kind === "booking" && own.has(`${start}|${end}`)) continue;  // drawn as yours
          const shown = kind === "booking" && b.pending ? "pending" : kind;
          // Busy time is drawn behind the grid, so one can still drag over it: the server
          // then explains the refusal and offers alternatives or the waitlist.
          const title = kind === "closed" ? "" : `${labels[shown] || kind} ${hhmm(start)}–${hhmm(end)}`;
          events.push({ start, end, title, display: "background", classNames: ["ev-" + shown] });
        }
        for (const b of mine) {
          const start = wallZ(b.start);
          const end = wallZ(b.end);
          const label = b.status === "pending" ? labels.minePending : labels.mine;
          events.push({ start, end, title: `${label} ${hhmm(start)}–${hhmm(end)}`, display: "background",
                        classNames: [b.status === "pending" ? "ev-mine-pending" : "ev-mine"] });
        }
        success(events);
      })
      .catch((err) => {
        if (errorBox) { errorBox.textContent = el.dataset.error; errorBox.hidden = false; }
        failure(err);
      });
  }

  // FullCalendar draws its arrows as role="img" without a name; the buttons carry one in
  // their title. Hide the icons from screen readers and name the buttons for them, each
  // time the toolbar is drawn again (a change of view changes the titles).
  function nameToolbarButtons() {
    setTimeout(() => {
      for (const icon of el.querySelectorAll(".fc-toolbar .fc-icon")) icon.setAttribute("aria-hidden", "true");
      for (const button of el.querySelectorAll(".fc-toolbar button[title]")) button.setAttribute("aria-label", button.title);
    }, 0);
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
    datesSet: nameToolbarButtons,
    // Only times still ahead can be picked.
    selectAllow: (info) => info.start.getTime() >= Date.parse(wallOf(new Date()) + "Z"),
    select: (info) => {
      const start = document.getElementById("start");
      const end = document.getElementById("end");
      if (!start || !end) return;
      start.value = toInput(info.start);
      end.value = toInput(info.end);
      // As if typed: the form's price line (htmx, on change) follows the pick.
      end.dispatchEvent(new Event("change", { bubbles: true }));
      const purpose = document.getElementById("purpose");
      (purpose || start).focus();
    },
  });
  calendar.render();
  // A booking made, moved or cancelled by htmx redraws the calendar; a booking made in
  // another week than the one shown turns the calendar to it, so one sees it taken.
  // A booking made here also clears the form, so the next one starts fresh.
  document.body.addEventListener("booking-changed", (event) => {
    const start = event.detail && event.detail.start;
    const at = start ? new Date(wallZ(start)) : null;
    const view = calendar.view;
    if (at && (at < view.activeStart || at >= view.activeEnd)) calendar.gotoDate(at);
    else calendar.refetchEvents();
    const form = document.querySelector("form.booking-form");
    if (form) for (const name of ["start", "end", "purpose"]) { if (form.elements[name]) form.elements[name].value = ""; }
  });
  window.labshareCalendar = calendar;
})();
