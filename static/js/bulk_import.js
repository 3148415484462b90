// The bulk-provisioning page: uploads the CSV, shows the import's progress as the server streams it
// (NDJSON: {"done", "total"} lines, then {"result"}), and renders the dry-run preview or the errors.
const form = document.getElementById("import-form");
const box = document.getElementById("import-progress");
const bar = box.querySelector("progress");
const text = box.querySelector("[data-progress-text]");
const out = document.getElementById("import-result");
const t = (key, values = {}) =>
  (out.dataset[key] || "").replace(/%\((\w+)\)s/g, (_, name) => new Intl.NumberFormat().format(values[name]));

function cell(row, value) {
  const td = document.createElement("td");
  td.textContent = value;
  row.append(td);
}

function render(result) {
  out.hidden = false;
  out.replaceChildren();
  const head = document.createElement("h2");
  out.append(head);
  if (result.errors.length) {
    head.textContent = t("i18nBad", { count: result.errors.length });
    head.className = "error";
    const table = document.createElement("table");
    table.id = "import-errors";
    for (const error of result.errors) {
      const tr = table.insertRow();
      cell(tr, error.line ? `${t("i18nLine")} ${error.line}` : "");
      cell(tr, error.messages.join(" "));
    }
    out.append(table);
    return;
  }
  if (result.dry_run) {
    head.textContent = t("i18nOk", { rows: result.rows });
    const table = document.createElement("table");
    table.id = "import-preview";
    for (const row of result.preview) {
      const tr = table.insertRow();
      for (const value of [row.line, row.serial, row.type, row.facility, row.name, row.channels.join(" | ")]) cell(tr, value);
    }
    out.append(table);
    return;
  }
  head.textContent = t("i18nDone", { count: result.devices.length });
  // The keys file is in the format `manage.py simulate --keys` reads: {serial: private key PEM}.
  const keys = Object.fromEntries(result.devices.map((d) => [d.serial, d.private_key_pem]));
  const link = document.createElement("a");
  link.id = "import-keys";
  link.download = "device-keys.json";
  link.href = URL.createObjectURL(new Blob([JSON.stringify(keys, null, 2)], { type: "application/json" }));
  link.textContent = t("i18nKeys");
  const list = document.createElement("ul");
  for (const d of result.devices.slice(0, 200)) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `../${d.id}/`;
    a.textContent = d.serial;
    li.append(a);
    list.append(li);
  }
  out.append(link, list);
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  data.set("dry_run", event.submitter && event.submitter.value === "1" ? "1" : "0");
  for (const button of form.querySelectorAll("button")) button.disabled = true;
  box.hidden = false;
  bar.removeAttribute("value");
  text.textContent = t("i18nWorking");
  try {
    const response = await fetch(form.action, { method: "POST", body: data, credentials: "same-origin" });
    if (!response.body || !(response.headers.get("content-type") || "").includes("ndjson")) {
      render(await response.json());
      return;
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let newline;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const message = JSON.parse(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        if (message.result) render(message.result);
        else {
          bar.max = message.total;
          bar.value = message.done;
          text.textContent = t("i18nProgress", message);
        }
      }
    }
  } finally {
    box.hidden = true;
    for (const button of form.querySelectorAll("button")) button.disabled = false;
  }
});
