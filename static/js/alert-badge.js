/* The alert badge in the menu, live over /ws/alerts/live; reconnects with a growing pause. */
(function () {
  "use strict";
  const badge = document.querySelector("[data-alert-badge]");
  if (!badge) return;
  const format = new Intl.NumberFormat(document.documentElement.lang || "en");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  let pause = 1000;

  function connect() {
    const socket = new WebSocket(`${scheme}://${location.host}/ws/alerts/live`);
    socket.addEventListener("open", () => { pause = 1000; });
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type !== "alerts") return;
      badge.textContent = format.format(message.open);
      badge.hidden = message.open === 0;
      badge.dataset.live = "1";
    });
    socket.addEventListener("close", (event) => {
      if (event.code >= 4000) return;  // refused: not signed in, no tenant
      setTimeout(connect, pause);
      pause = Math.min(pause * 2, 30000);
    });
  }
  connect();
})();
