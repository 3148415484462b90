// A rollout's live progress: snapshots from /ws/firmware/rollouts/<id>/live, drawn into the page.
const script = document.getElementById("rollout-script");
const labels = JSON.parse(document.getElementById("rollout-labels").textContent);
const number = new Intl.NumberFormat(document.documentElement.lang || undefined);
const liveState = document.querySelector(".live-state");

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function draw(snapshot) {
  document.querySelector('[data-figure="state"]').textContent = labels.state[snapshot.state] || snapshot.state;
  document.querySelector('[data-figure="state"]').dataset.state = snapshot.state;
  document.querySelector('[data-figure="pause_reason"]').textContent = snapshot.pause_reason;
  for (const [status, n] of Object.entries(snapshot.counts)) {
    const el = document.querySelector(`[data-count="${status}"]`);
    if (el) el.textContent = number.format(n);
  }
  for (const form of document.querySelectorAll("#controls form[data-when]")) {
    form.hidden = !form.dataset.when.split(" ").includes(snapshot.state);
  }
  const waves = document.querySelector("#waves tbody");
  waves.replaceChildren(...snapshot.waves.map((w) => {
    const tr = document.createElement("tr");
    tr.dataset.wave = String(w.index + 1);
    tr.append(
      cell(number.format(w.index + 1)),
      cell(labels.wave[w.state] || w.state),
      cell(number.format(w.size), "num"),
      ...["succeeded", "in_progress", "retry_wait", "failed"].map((s) => {
        const td = cell(number.format(w.counts[s]), "num");
        td.dataset.count = s;
        return td;
      }),
    );
    return tr;
  }));
  const devices = document.querySelector("#rollout-devices tbody");
  devices.replaceChildren(...snapshot.devices.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.device = String(d.id);
    tr.dataset.status = d.status;
    tr.append(
      cell(d.serial),
      cell(number.format(d.wave + 1)),
      cell(labels.status[d.status] || d.status),
      cell(d.percent === null ? "–" : `${number.format(d.percent)} %`, "num"),
      cell(number.format(d.attempts), "num"),
      cell(d.reason, "reason"),
    );
    return tr;
  }));
}

function connect(delay) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}${script.dataset.ws}`);
  socket.onopen = () => { liveState.dataset.state = "live"; liveState.textContent = labels.live.live; };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "rollout.progress") draw(message);
  };
  socket.onclose = (event) => {
    if (event.code === 4401 || event.code === 4403) {
      liveState.dataset.state = "refused";
      liveState.textContent = labels.live.refused;
      return;
    }
    liveState.dataset.state = "reconnecting";
    liveState.textContent = labels.live.reconnecting;
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

connect(500);
