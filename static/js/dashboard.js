/* The facility dashboard: uPlot charts over a rolling 15-minute window, and the live figures. */
(function () {
  "use strict";
  const root = document.getElementById("dashboard");
  const format = window.EnergyboxLive.format;
  const COLORS = ["#0a7c5a", "#1f6feb", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#65a30d", "#be185d"];
  const timezone = root.dataset.timezone;

  let windowMs = 15 * 60 * 1000;
  let clockOffset = 0; // server time minus browser time
  let series = {}; // channel id -> {ts: [], v: []}
  let charts = []; // {plot, channels: [id, ...], el}
  const digits = {}; // channel id -> decimals shown
  let dirty = false;
  // A state channel (door, compressor, defrost: unit "state") is drawn as bands, one lane per channel:
  // each sample's state holds until the next sample, the newest until now; a gap longer than this ends it.
  const STATE_GAP_MS = 5 * 60 * 1000;
  const STATE_OFF = "#e3e6eb";
  const isState = (el) => el.dataset.unit === "state";
  const stateText = (v) => (v >= 0.5 ? root.dataset.stateOn || "on" : root.dataset.stateOff || "off");
  const stateChannels = new Set();

  const serverNow = () => Date.now() + clockOffset;
  const lang = document.documentElement.lang || "en";
  const clock = (seconds) =>
    new Date(seconds * 1e3).toLocaleTimeString(lang, { timeZone: timezone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  const clockWithZone = (ms) =>
    new Date(ms).toLocaleTimeString(lang, { timeZone: timezone, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short" });
  // Totals read in kW, or in W below 1 kW.
  const power = (kw) => (window.EnergyboxFormat ? window.EnergyboxFormat.power(kw, 2) : format(kw, 2) + " kW");

  function text(selector, value) {
    for (const el of root.querySelectorAll(selector)) el.textContent = value;
  }

  function buildCharts(channels) {
    for (const chart of charts) chart.plot.destroy();
    const names = new Map(channels.map((c) => [String(c.id), c.name]));
    charts = Array.from(root.querySelectorAll(".chart")).map(function (el) {
      const ids = el.dataset.channels.split(",");
      ids.forEach(function (id, i) {
        const swatch = root.querySelector('[data-swatch="' + id + '"]');
        if (swatch) swatch.style.background = COLORS[i % COLORS.length];
      });
      const unit = el.dataset.unit === "1" ? "" : " " + el.dataset.unit;
      if (isState(el)) return { plot: stateChart(el, ids, names), channels: ids, el: el, state: true };
      const plot = new uPlot(
        {
          width: el.clientWidth || 400,
          height: 170,
          // Hovering shows the time (with its zone) and each series' value beside its label.
          legend: { show: true, live: true },
          cursor: { sync: { key: "dashboard" } }, // charts in a row share the time axis and the cursor
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), timezone),
          scales: { x: { time: true, range: () => [(serverNow() - windowMs) / 1e3, serverNow() / 1e3] } },
          axes: [
            { stroke: "#6b7585", values: (u, splits) => splits.map(clock) },
            {
              stroke: "#6b7585",
              values: (u, splits) => splits.map((v) => format(v, Math.abs(v) < 10 && v % 1 ? 1 : 0)),
              size: (u, values) => 18 + 7.5 * Math.max(3, ...(values || []).map((v) => String(v).length)),
            },
          ],
          series: [{ value: (u, v) => (v === null ? "–" : clockWithZone(v * 1e3)) }].concat(ids.map((id, i) => ({
            label: names.get(id) || id, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
            value: (u, v) => (v === null || v === undefined ? "–" : format(v, digits[id] || 1) + unit),
          }))),
        },
        data(ids),
        el,
      );
      return { plot: plot, channels: ids, el: el };
    });
  }

  // [{start, end, on}] in ms, clipped to the chart's window: what the state chart draws for a channel.
  function bands(id) {
    const s = series[id];
    if (!s || !s.ts.length) return [];
    const now = serverNow();
    const oldest = now - windowMs;
    const out = [];
    for (let i = 0; i < s.ts.length; i++) {
      const next = i + 1 < s.ts.length ? s.ts[i + 1] : now;
      const end = Math.min(next, s.ts[i] + STATE_GAP_MS, now);
      const start = Math.max(s.ts[i], oldest);
      if (end <= start) continue;
      const on = s.v[i] >= 0.5;
      const last = out[out.length - 1];
      if (last && last.on === on && last.end === start) last.end = end;
      else out.push({ start: start, end: end, on: on });
    }
    return out;
  }

  function stateChart(el, ids, names) {
    el.dataset.chartKind = "state";
    ids.forEach((id) => stateChannels.add(id));
    const lanes = ids.length;
    return new uPlot(
      {
        width: el.clientWidth || 400,
        height: Math.max(70, 30 + 26 * lanes),
        legend: { show: true, live: true },
        cursor: { sync: { key: "dashboard" }, points: { show: false } },
        tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), timezone),
        scales: {
          x: { time: true, range: () => [(serverNow() - windowMs) / 1e3, serverNow() / 1e3] },
          y: { auto: false, range: [0, lanes] },
        },
        axes: [{ stroke: "#6b7585", values: (u, splits) => splits.map(clock) }, { show: false }],
        series: [{ value: (u, v) => (v === null ? "–" : clockWithZone(v * 1e3)) }].concat(ids.map((id, i) => ({
          label: names.get(id) || id, stroke: COLORS[i % COLORS.length], fill: COLORS[i % COLORS.length],
          paths: () => null, points: { show: false },
          value: (u, v) => (v === null || v === undefined ? "–" : stateText(v)),
        }))),
        hooks: {
          draw: [function (u) {
            const ctx = u.ctx;
            ctx.save();
            ids.forEach(function (id, lane) {
              if (!u.series[lane + 1].show) return;
              // Lane 0 at the top: y runs from `lanes` (top) to 0 (bottom).
              const top = u.valToPos(lanes - lane - 0.15, "y", true);
              const bottom = u.valToPos(lanes - lane - 0.85, "y", true);
              for (const b of bands(id)) {
                const left = u.valToPos(b.start / 1e3, "x", true);
                const right = u.valToPos(b.end / 1e3, "x", true);
                ctx.fillStyle = b.on ? COLORS[lane % COLORS.length] : STATE_OFF;
                ctx.fillRect(left, top, Math.max(1, right - left), bottom - top);
              }
            });
            ctx.restore();
          }],
        },
      },
      data(ids),
      el,
    );
  }

  function data(ids) {
    const tables = ids.map((id) => [series[id] ? series[id].ts.map((t) => t / 1e3) : [], series[id] ? series[id].v : []]);
    if (tables.every((t) => t[0].length === 0)) return [[]].concat(ids.map(() => []));
    return uPlot.join(tables.map((t) => (t[0].length ? t : [[0], [null]])));
  }

  function addSamples(ts, values) {
    for (const id of Object.keys(values)) {
      const s = series[id];
      if (!s) continue;
      values[id].forEach(function (v, i) {
        // Samples the snapshot already had (the socket joins before reading history) are skipped.
        if (v === null || (s.ts.length && ts[i] <= s.ts[s.ts.length - 1])) return;
        s.ts.push(ts[i]);
        s.v.push(v);
      });
      if (s.v.length) {
        const last = s.v[s.v.length - 1];
        text('[data-channel-last="' + id + '"]', stateChannels.has(id) ? stateText(last) : format(last, digits[id] || 1));
      }
    }
    dirty = true;
  }

  function trim() {
    const oldest = serverNow() - windowMs;
    for (const s of Object.values(series)) {
      let n = 0;
      while (n < s.ts.length && s.ts[n] < oldest) n++;
      if (n) { s.ts.splice(0, n); s.v.splice(0, n); }
    }
  }

  function redraw() {
    if (dirty) {
      trim();
      for (const chart of charts) chart.plot.setData(data(chart.channels));
      dirty = false;
    } else {
      for (const chart of charts) chart.plot.redraw(false); // slide the window
    }
  }

  function showFigures(m) {
    if (m.power) {
      text('[data-figure="total_kw"]', power(m.power.total_kw));
      for (const [load, kw] of Object.entries(m.power.loads)) text('[data-load-kw="' + load + '"]', power(kw));
    }
    if ("energy_today_kwh" in m) text('[data-figure="energy_today_kwh"]', format(m.energy_today_kwh, 1));
    if (m.month_peak !== undefined) text('[data-figure="month_peak_kw"]', m.month_peak ? format(m.month_peak.kw, 1) : "–");
    if (m.demand) {
      text('[data-figure="projection_kw"]', format(m.demand.projection_kw, 1));
      const ends = new Date(m.demand.interval_start + 15 * 60 * 1000);
      const over = m.month_peak && m.demand.projection_kw > m.month_peak.kw;
      const note = root.querySelector('[data-figure="demand_note"]');
      if (note) {
        text('[data-figure="demand_note"]', (over ? note.dataset.overPeak + " · " : "") +
          note.dataset.ends + " " + ends.toLocaleTimeString(lang, { timeZone: timezone, hour: "2-digit", minute: "2-digit", timeZoneName: "short" }));
        root.querySelector("[data-demand]").classList.toggle("over-peak", Boolean(over));
      }
      // The facility's peak target (billing): warn while the running interval is projected above it.
      const warning = root.querySelector("[data-peak-warning]");
      if (warning) warning.hidden = !(m.demand.projection_kw > parseFloat(warning.closest("[data-demand]").dataset.peakTarget));
    }
    if ("devices_online" in m) {
      text('[data-figure="devices_online"]', m.devices_online);
      text('[data-figure="devices_total"]', m.devices_total);
    }
  }

  function showDevice(id, online, lastSeen) {
    for (const el of root.querySelectorAll('[data-device-status="' + id + '"]')) {
      el.textContent = online ? (root.dataset.online || "online") : (root.dataset.offline || "offline");
      el.className = "status " + (online ? "online" : "offline");
    }
    if (lastSeen) {
      text('[data-device-seen="' + id + '"]', clockWithZone(lastSeen));
    }
  }

  function onMessage(m) {
    if (m.type === "snapshot") {
      clockOffset = m.now - Date.now();
      windowMs = m.window_ms;
      series = {};
      for (const c of m.channels) {
        series[c.id] = { ts: [], v: [] };
        digits[c.id] = c.unit === "1" ? 2 : 1; // a power factor needs its second decimal
        if (c.unit === "state") stateChannels.add(String(c.id));
      }
      for (const [id, s] of Object.entries(m.series)) if (series[id]) addSamples(s.ts, { [id]: s.values });
      buildCharts(m.channels);
      for (const d of m.devices) showDevice(d.id, d.online, d.last_seen);
      showFigures(m);
    } else if (m.type === "readings") {
      addSamples(m.ts, m.values);
      showDevice(m.device_id, true, m.ts[m.ts.length - 1]);
      showFigures(m);
    } else if (m.type === "status") {
      showDevice(m.device_id, m.online, m.last_seen);
      showFigures(m);
    }
  }

  setInterval(redraw, 1000);
  let scheduled = false;
  function soon() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(function () { scheduled = false; redraw(); });
  }
  window.addEventListener("resize", function () {
    for (const chart of charts) chart.plot.setSize({ width: chart.el.clientWidth, height: chart.state ? chart.plot.height : 170 });
  });

  window.EnergyboxLive.connect(root.dataset.ws, {
    onMessage: function (m) { onMessage(m); if (m.type === "readings") soon(); },
  });

  // For the browser test and the curious: the charts' data as drawn.
  window.energyboxDashboard = {
    bands: function (channelId) { return bands(String(channelId)); },
    // The canvas colour at the middle of a channel's band number `i` ([r, g, b, a]), as drawn.
    bandPixel: function (channelId, i) {
      const chart = charts.find((c) => c.channels.includes(String(channelId)));
      const band = bands(String(channelId))[i];
      if (!chart || !chart.state || !band) return null;
      const u = chart.plot;
      const lane = chart.channels.indexOf(String(channelId));
      const x = Math.round(u.valToPos((band.start + band.end) / 2e3, "x", true));
      const y = Math.round(u.valToPos(chart.channels.length - lane - 0.5, "y", true));
      return Array.from(u.ctx.getImageData(x, y, 1, 1).data);
    },
    color: function (channelId) {
      const chart = charts.find((c) => c.channels.includes(String(channelId)));
      return chart ? COLORS[chart.channels.indexOf(String(channelId)) % COLORS.length] : null;
    },
    chartKind: function (channelId) {
      const chart = charts.find((c) => c.channels.includes(String(channelId)));
      return chart ? (chart.state ? "state" : "line") : null;
    },
    lastPoint: function (channelId) {
      const chart = charts.find((c) => c.channels.includes(String(channelId)));
      if (!chart) return null;
      const d = chart.plot.data;
      const column = d[chart.channels.indexOf(String(channelId)) + 1];
      for (let i = d[0].length - 1; i >= 0; i--) if (column[i] !== null && column[i] !== undefined) return { t: d[0][i] * 1e3, v: column[i] };
      return null;
    },
  };
})();
