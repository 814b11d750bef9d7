// The network dashboard: KPI cards and charts from the admin API (signed in by the page
// cookie), plus the subsidy chart from the settlement the page embeds.
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  if (!root || !window.Chart) return;
  const d = root.dataset;
  // No animation: figures appear at once (and for people who prefer reduced motion).
  Chart.defaults.animation = false;
  const lang = document.documentElement.lang;
  const percent = new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 1 });
  // Axis ticks of small shares (0.02%) must not all read "0%".
  const share = new Intl.NumberFormat(lang, { style: "percent", maximumSignificantDigits: 2 });
  const number = new Intl.NumberFormat(lang, { maximumFractionDigits: 1 });
  const money = new Intl.NumberFormat(lang, { style: "currency", currency: d.currency.toUpperCase(), maximumFractionDigits: 0 });
  // Minor units (fen, cents) to major; the network's currencies have two decimals but yen.
  const major = (minor) => (["jpy", "krw"].includes(d.currency) ? minor : minor / 100);
  const errorBox = document.getElementById("dashboard-error");
  const fail = () => { errorBox.textContent = d.error; errorBox.hidden = false; };

  const get = (url) =>
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(String(r.status)))));

  function fillCards(k) {
    for (const el of document.querySelectorAll("[data-kpi]")) {
      const value = k[el.dataset.kpi];
      const format = el.dataset.format;
      el.textContent = format === "percent" ? percent.format(value) : format === "money" ? money.format(major(value)) : number.format(value);
    }
  }

  // An axis label of at most `max` characters; narrow screens get shorter ones.
  const labelMax = window.matchMedia("(max-width: 40rem)").matches ? 16 : 30;
  const shorten = (text) => (text.length > labelMax ? text.slice(0, labelMax - 1) + "…" : text);

  function externalChart(k) {
    const rows = [...(k.by_institution || [])].sort((a, b) => b.used_hours - a.used_hours).slice(0, 12);
    new Chart(document.getElementById("chart-external"), {
      type: "bar",
      data: {
        labels: rows.map((r) => r.name),
        datasets: [
          { label: d.labelExternal, data: rows.map((r) => r.external_hours), backgroundColor: "#1f6fb2" },
          { label: d.labelInternal, data: rows.map((r) => Math.max(0, r.used_hours - r.external_hours)), backgroundColor: "#a9c5e8" },
        ],
      },
      options: {
        indexAxis: "y", maintainAspectRatio: false, responsive: true,
        // Long names are shortened on the axis (the tooltip gives them whole), so none is clipped.
        scales: { x: { stacked: true }, y: { stacked: true, ticks: { autoSkip: false, callback: (_v, i) => shorten(rows[i].name) } } },
        plugins: { tooltip: { callbacks: { title: (items) => rows[items[0].dataIndex].name } } },
      },
    });
  }

  function trendChart(months, values) {
    new Chart(document.getElementById("chart-trend"), {
      type: "line",
      data: { labels: months, datasets: [{ label: d.labelUtilisation, data: values, borderColor: "#1e7b3a", backgroundColor: "#e3f4e8", fill: true, tension: 0 }] },
      options: { maintainAspectRatio: false, responsive: true, scales: { y: { beginAtZero: true, ticks: { callback: (v) => share.format(v) } } },
                 plugins: { tooltip: { callbacks: { label: (c) => share.format(c.parsed.y) } } } },
    });
  }

  function subsidyChart() {
    const node = document.getElementById("subsidy-data");
    if (!node) return;
    const s = JSON.parse(node.textContent);
    const labels = [...s.labels];
    const reward = s.reward.map(major);
    const vouchers = s.vouchers.map(major);
    if (s.others_reward || s.others_vouchers) {
      labels.push(d.labelOthers); reward.push(major(s.others_reward)); vouchers.push(major(s.others_vouchers));
    }
    new Chart(document.getElementById("chart-subsidy"), {
      type: "bar",
      data: { labels, datasets: [
        { label: d.labelReward, data: reward, backgroundColor: "#0f3d5e" },
        { label: d.labelVouchers, data: vouchers, backgroundColor: "#f5a623" },
      ] },
      options: { maintainAspectRatio: false, responsive: true, scales: { x: { stacked: true, ticks: { autoSkip: false, maxRotation: 60, callback: (_v, i) => shorten(labels[i]) } }, y: { stacked: true, ticks: { callback: (v) => money.format(v) } } },
                 plugins: { tooltip: { callbacks: { title: (items) => labels[items[0].dataIndex] } } } },
    });
  }

  subsidyChart();
  const months = d.trend.split(",");
  // The chosen month (cards and the institution chart), and the whole trend in one request:
  // the server groups the range by month in one pass instead of one KPI run per month.
  get(`/api/v1/admin/kpis?period=${d.period}`).then((k) => { fillCards(k); externalChart(k); }).catch(fail);
  get(`/api/v1/admin/kpis/trend?from=${months[0]}&to=${months[months.length - 1]}`)
    .then((t) => {
      const byMonth = new Map(t.months.map((m) => [m.period, m.utilisation]));
      trendChart(months, months.map((m) => (byMonth.has(m) ? byMonth.get(m) : null)));
    })
    .catch(() => trendChart(months, months.map(() => null)));
})();
