/* The facility park overview: one summary per facility row, live. */
(function () {
  "use strict";
  const table = document.getElementById("facility-park");
  const rows = new Map();
  for (const tr of table.querySelectorAll("tr[data-facility-id]")) rows.set(Number(tr.dataset.facilityId), tr);
  if (!rows.size) return;
  const format = window.EnergyboxLive.format;
  const power = window.EnergyboxFormat.power;

  function set(tr, cell, text) {
    const el = tr.querySelector('[data-cell="' + cell + '"]');
    if (el) el.textContent = text;
  }

  function show(summary) {
    const tr = rows.get(summary.id);
    if (!tr) return;
    // Until the socket has heard of a facility its total is null: keep the server-rendered snapshot.
    if (summary.power.total_kw !== null && summary.power.total_kw !== undefined) set(tr, "power", power(summary.power.total_kw));
    set(tr, "energy", format(summary.energy_today_kwh, 1));
    set(tr, "peak", summary.month_peak ? format(summary.month_peak.kw, 1) : "–");
    set(tr, "online", summary.devices_online);
    set(tr, "total", summary.devices_total);
  }

  window.EnergyboxLive.connect(table.dataset.ws, {
    onOpen: function (send) { send({ type: "subscribe", facilities: Array.from(rows.keys()) }); },
    onMessage: function (message) {
      if (message.type === "snapshot") message.facilities.forEach(show);
      else if (message.type === "facility") show(message);
    },
  });

  for (const select of document.querySelectorAll("#park-filters select")) {
    select.addEventListener("change", function () { select.form.submit(); });
  }
})();
