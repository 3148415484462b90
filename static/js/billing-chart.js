/* The bills and peaks pages: a month of 15-minute demand, the peak interval marked, the target as a line. */
(function () {
  "use strict";
  const el = document.getElementById("demand-chart");
  const script = document.getElementById("demand-data");
  if (!el || !script) return;
  const data = JSON.parse(script.textContent);
  const timezone = data.timezone;
  const peakIndex = data.peak === null ? -1 : data.t.indexOf(data.peak);
  const marker = data.kw.map((v, i) => (i === peakIndex ? v : null));
  const target = data.t.map(() => data.target);
  const format = new Intl.NumberFormat(document.documentElement.lang || undefined, { maximumFractionDigits: 1 });
  const series = [
    {},
    { label: "kW", stroke: "#1f6feb", width: 1.2, spanGaps: false },
    { label: "peak", stroke: "#dc2626", width: 0, points: { show: true, size: 10, fill: "#dc2626" } },
  ];
  const columns = [data.t, data.kw, marker];
  if (data.target !== null) {
    series.push({ label: "target", stroke: "#d97706", width: 1.5, dash: [6, 4], points: { show: false } });
    columns.push(target);
  }
  const plot = new uPlot(
    {
      width: el.clientWidth || 800,
      height: 260,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), timezone),
      axes: [{ stroke: "#6b7585" }, { stroke: "#6b7585", size: 60, values: (u, splits) => splits.map((v) => format.format(v)) }],
      series: series,
    },
    columns,
    el,
  );
  window.energyboxDemandChart = { plot: plot, peakIndex: peakIndex, points: data.t.length, target: data.target };
})();
