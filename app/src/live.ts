// The facility's live websocket. Browsers cannot set an Authorization header on a WebSocket, so the
// token goes as the second of two subprotocols; the server answers with "energybox.bearer" alone.
import type { Latest } from "./api";

export const BEARER_SUBPROTOCOL = "energybox.bearer";

export function liveUrl(facilityId: number, origin: string = location.origin): string {
  return `${origin.replace(/^http/, "ws")}/ws/facilities/${facilityId}/live`;
}

type Samples = [string, number[], (number | null)[]];

interface LiveMessage {
  type: string;
  ts?: number[];
  values?: Record<string, (number | null)[]>;
  series?: Record<string, { ts: number[]; values: (number | null)[] }>;
  code?: number;
}

// Folds a snapshot's series or a readings message into the newest value per channel (as
// readings/latest/ answers it). Returns whether a channel got a newer value.
export function mergeLive(latest: Map<number, Latest>, message: LiveMessage): boolean {
  const samples: Samples[] = [];
  if (message.type === "snapshot" && message.series) {
    for (const [id, s] of Object.entries(message.series)) samples.push([id, s.ts, s.values]);
  } else if (message.type === "readings" && message.values && message.ts) {
    for (const [id, values] of Object.entries(message.values)) samples.push([id, message.ts, values]);
  }
  let changed = false;
  for (const [id, ts, values] of samples) {
    for (let i = Math.min(values.length, ts.length) - 1; i >= 0; i--) {
      const value = values[i];
      if (value === null || value === undefined) continue;
      const channel = Number(id);
      const before = latest.get(channel);
      if (!before?.t || Date.parse(before.t) < ts[i]) {
        latest.set(channel, { channel, t: new Date(ts[i]).toISOString(), value });
        changed = true;
      }
      break;
    }
  }
  return changed;
}

// Opens the socket; `onLatest` gets every channel's newest value as it changes, `onOpen` tells
// whether the socket is delivering (the screen polls while it is not). Returns the closer.
export function openLive(
  facilityId: number,
  token: string | undefined,
  onLatest: (latest: Latest[]) => void,
  onOpen: (open: boolean) => void,
  retryMs = 10000,
): () => void {
  let stopped = false;
  let socket: WebSocket | null = null;
  let retry: ReturnType<typeof setTimeout> | undefined;
  const latest = new Map<number, Latest>();
  const connect = () => {
    if (stopped || !token || typeof WebSocket === "undefined") return onOpen(false);
    socket = new WebSocket(liveUrl(facilityId), [BEARER_SUBPROTOCOL, token]);
    socket.onmessage = (event) => {
      const message = JSON.parse(String(event.data)) as LiveMessage;
      if (message.type === "snapshot") onOpen(true);
      if (mergeLive(latest, message)) onLatest([...latest.values()]);
    };
    socket.onclose = () => {
      onOpen(false);
      // Refused (4401/4403) or dropped: the poll carries on, and a refused token shows there.
      if (!stopped) retry = setTimeout(connect, retryMs);
    };
  };
  connect();
  return () => {
    stopped = true;
    if (retry) clearTimeout(retry);
    socket?.close();
  };
}
