/* A live websocket: reconnects with backoff and shows "live" / "reconnecting" in .live-state.
 * Protocol: portal/liveprotocol.py. Close codes 4401 (sign in) and 4403 (no access) are final. */
(function () {
  "use strict";

  const MIN_DELAY_MS = 1000;
  const MAX_DELAY_MS = 30000;
  const PING_EVERY_MS = 10000;
  const SILENCE_LIMIT_MS = 25000; // no message at all, not even a pong: the connection is dead

  function showState(state, text) {
    for (const el of document.querySelectorAll(".live-state")) {
      el.dataset.state = state;
      el.textContent = text;
    }
  }

  function connect(path, handlers) {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
    let socket = null;
    let attempt = 0;
    let lastHeard = 0;
    let pingTimer = null;
    let refusal = null;

    function send(message) {
      if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
    }

    function open() {
      refusal = null;
      socket = new WebSocket(url);
      socket.onopen = function () {
        lastHeard = Date.now();
        pingTimer = setInterval(function () {
          if (Date.now() - lastHeard > SILENCE_LIMIT_MS) socket.close();
          else send({ type: "ping", id: Date.now() % 1e9 });
        }, PING_EVERY_MS);
        if (handlers.onOpen) handlers.onOpen(send);
      };
      socket.onmessage = function (event) {
        lastHeard = Date.now();
        const message = JSON.parse(event.data);
        if (message.type === "error") {
          refusal = message;
          return;
        }
        if (message.type === "snapshot") {
          attempt = 0;
          showState("live", "live");
        }
        if (message.type !== "pong") handlers.onMessage(message);
      };
      socket.onclose = function (event) {
        clearInterval(pingTimer);
        if (event.code === 4401) {
          showState("refused", "signed out");
          location.assign("/login/?next=" + encodeURIComponent(location.pathname));
          return;
        }
        if (event.code === 4403) {
          showState("refused", (refusal && refusal.reason) || "no access");
          return;
        }
        attempt += 1;
        // Exponential backoff with jitter, so a restarted server is not hit by every client at once.
        const delay = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
        showState("reconnecting", "reconnecting in " + Math.ceil(delay / 1000) + " s…");
        setTimeout(open, delay);
      };
    }

    showState("connecting", "connecting…");
    open();
    const connection = { send: send, drop: function () { if (socket) socket.close(); } };
    connections.push(connection);
    return connection;
  }

  const connections = [];

  function format(value, digits) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    // The page's language decides the separators: "1.234,5" in German, "1,234.5" in English.
    return value.toLocaleString(document.documentElement.lang || "en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }

  window.EnergyboxLive = { connect: connect, format: format, connections: connections };
})();
