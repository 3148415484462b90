/* A period view: total power (with the compared period overlaid), the load breakdown, the carpet plot
 * and every channel's chart, drawn from the page's JSON (portal/analysis.py). */
(function () {
  "use strict";
  const root = document.getElementById("period");
  if (!root) return;
  const fmt = window.EnergyboxFormat;
  const data = JSON.parse(document.getElementById("period-data").textContent);
  const carpet = JSON.parse(document.getElementById("carpet-data").textContent);
  const timezone = data.timezone;
  const COLORS = ["#0a7c5a", "#1f6feb", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#be185d"];
  const xs = data.t.map((t) => t / 1e3);
  const range = [Date.parse(data.start) / 1e3, Date.parse(data.end) / 1e3];
  const withDate = data.resolution !== "15m" || data.range !== "today";
  const charts = [];

  function tick(seconds) {
    const options = data.resolution === "1mo" ? { month: "short", year: "2-digit" }
      : data.resolution === "1d" || (range[1] - range[0]) > 2 * 86400 ? { day: "2-digit", month: "2-digit" }
      : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    return fmt.dateTime(seconds * 1e3, timezone, options);
  }

  function plot(el, series, columns, unit, extra) {
    const digits = unit === "1" ? 2 : 1;
    const opts = Object.assign({
      width: el.clientWidth || 340,
      height: 200,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), timezone),
      scales: { x: { time: true, range: () => range } }, // every chart of the page on one time axis
      legend: { live: true },
      axes: [
        { stroke: "#6b7585", values: (u, splits) => splits.map(tick) },
        {
          stroke: "#6b7585",
          values: (u, splits) => splits.map((v) => fmt.number(v, Math.abs(v) < 10 && v % 1 ? 1 : 0)),
          // Wide enough for the longest tick label, so "2,500,000" is never cut.
          size: (u, values) => 18 + 7.5 * Math.max(3, ...(values || []).map((v) => String(v).length)),
        },
      ],
      series: [{ label: "", value: (u, v) => (v === null ? "–" : fmt.stamp(v * 1e3, timezone, withDate)) }].concat(series.map(
        (s, i) => Object.assign({
          stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
          value: (u, v) => (v === null || v === undefined ? "–" : fmt.number(v, digits) + (fmt.unit(unit) ? " " + fmt.unit(unit) : "")),
        }, s),
      )),
    }, extra || {});
    const chart = new uPlot(opts, columns, el);
    charts.push({ plot: chart, el: el });
    return chart;
  }

  // Total, with the compared period moved onto this period's time axis.
  const totalEl = root.querySelector('[data-chart="total"]');
  const totalSeries = [{ label: root.dataset.labelTotal }];
  let totalColumns = [xs, data.total_kw];
  if (data.compare) {
    const shifted = data.compare.t.map((t) => (t + data.compare.shift_ms) / 1e3);
    totalColumns = uPlot.join([[xs, data.total_kw], [shifted, data.compare.total_kw]]);
    totalSeries.push({ label: fmt.dateTime(Date.parse(data.compare.start), timezone, { year: "numeric", month: "2-digit", day: "2-digit" }) + " …", dash: [5, 4], stroke: "#6b7585" });
  }
  const total = plot(totalEl, totalSeries, totalColumns, "kW");

  // Load breakdown: each load stacked on the ones before it.
  const loadsEl = root.querySelector('[data-chart="loads"]');
  if (loadsEl && data.loads.length) {
    const stacked = [];
    let below = data.t.map(() => 0);
    for (const load of data.loads) {
      below = below.map((b, i) => b + (load.kw[i] || 0));
      stacked.push(below.slice());
    }
    const own = data.loads.map((l) => l.kw);
    plot(
      loadsEl,
      data.loads.map((l, i) => ({
        label: l.name, fill: COLORS[i % COLORS.length] + "66",
        value: (u, v, si, idx) => (idx === null ? "–" : fmt.number(own[si - 1][idx], 1) + " kW"),
      })),
      [xs].concat(stacked),
      "kW",
    );
    for (const swatch of root.querySelectorAll("[data-load-swatch]")) swatch.style.background = COLORS[Number(swatch.dataset.loadSwatch) % COLORS.length];
  }

  // Each channel chart.
  const byId = new Map(data.channels.map((c) => [String(c.id), c]));
  for (const el of root.querySelectorAll(".chart[data-channels]")) {
    const channels = el.dataset.channels.split(",").map((id) => byId.get(id)).filter(Boolean);
    if (!channels.length) continue;
    plot(el, channels.map((c) => ({ label: c.name })), [xs].concat(channels.map((c) => c.values)), el.dataset.unit);
  }

  // The carpet: days left to right, time of day top to bottom, one cell per 15 minutes.
  const canvas = document.getElementById("carpet");
  const STOPS = [[255, 247, 188], [254, 196, 79], [236, 112, 20], [204, 76, 2], [102, 37, 6]];
  const values = carpet.kw.filter((v) => v !== null);
  const lo = values.length ? Math.min.apply(null, values) : 0;
  const hi = values.length ? Math.max.apply(null, values) : 1;

  function colorFor(kw) {
    const x = hi > lo ? (kw - lo) / (hi - lo) : 0;
    const pos = Math.min(STOPS.length - 1.0001, Math.max(0, x * (STOPS.length - 1)));
    const i = Math.floor(pos), f = pos - i;
    return STOPS[i].map((c, k) => Math.round(c + (STOPS[i + 1][k] - c) * f));
  }

  function drawCarpet() {
    const days = carpet.days.length;
    const width = Math.max(1, canvas.parentElement.clientWidth);
    const height = carpet.slots * 2;
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#eef0f3";
    ctx.fillRect(0, 0, width, height);
    const image = ctx.getImageData(0, 0, width, height);
    for (let x = 0; x < width; x++) {
      const day = Math.floor((x * days) / width);
      for (let y = 0; y < height; y++) {
        const v = carpet.kw[day * carpet.slots + Math.floor(y / 2)];
        if (v === null || v === undefined) continue;
        const c = colorFor(v);
        const p = (y * width + x) * 4;
        image.data[p] = c[0]; image.data[p + 1] = c[1]; image.data[p + 2] = c[2]; image.data[p + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
  }

  function cellAt(x, y) {
    const day = Math.floor((x * carpet.days.length) / canvas.width);
    const slot = Math.floor(y / 2);
    return { day: day, slot: slot, kw: carpet.kw[day * carpet.slots + slot] };
  }

  if (canvas && carpet.days.length) {
    drawCarpet();
    root.querySelector("[data-carpet-min]").textContent = fmt.number(lo, 1);
    root.querySelector("[data-carpet-max]").textContent = fmt.number(hi, 1);
    canvas.addEventListener("mousemove", function (event) {
      const box = canvas.getBoundingClientRect();
      const cell = cellAt(event.clientX - box.left, event.clientY - box.top);
      const hh = String(Math.floor(cell.slot / 4)).padStart(2, "0"), mm = String((cell.slot % 4) * 15).padStart(2, "0");
      root.querySelector("[data-carpet-hover]").textContent = carpet.days[cell.day] + " " + hh + ":" + mm + " (" + timezone + "): " +
        (cell.kw === null ? "–" : fmt.power(cell.kw));
    });
  }

  window.addEventListener("resize", function () {
    for (const chart of charts) chart.plot.setSize({ width: chart.el.clientWidth, height: 200 });
    if (canvas && carpet.days.length) drawCarpet();
  });

  // For the browser tests: what the page drew.
  window.energyboxPeriod = {
    resolution: data.resolution,
    points: xs.length,
    total: total.data,
    compareDrawn: Boolean(data.compare) && total.data.length === 3 && total.data[2].some((v) => v !== null && v !== undefined),
    carpetPixel: function (day, slot) {
      const x = Math.floor(((day + 0.5) * canvas.width) / carpet.days.length);
      const p = canvas.getContext("2d").getImageData(x, slot * 2, 1, 1).data;
      return [p[0], p[1], p[2]];
    },
    colorFor: colorFor,
    carpetRange: [lo, hi],
  };
})();
