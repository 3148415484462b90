import { useEffect, useRef, useState } from "preact/hooks";
import { apiGet, listAll, type Channel, type Latest, type Load } from "../api";
import { tokens } from "../auth";
import { Sparkline } from "../charts";
import { useFigures } from "../figures";
import { kw } from "../format";
import { t } from "../i18n";
import { openLive } from "../live";
import { saveFigures } from "../store";
import { powerNow, type PowerNow } from "../totals";
import { Age, type ScreenProps } from "./common";

const WINDOW = 150; // 2-s samples: five minutes

interface Layout {
  channels: Channel[];
  loads: Load[];
}

export function Now({ userId, home, signedOut }: ScreenProps) {
  const layout = useFigures<Layout>(
    userId,
    `layout:${home.id}`,
    async () => ({
      channels: await listAll<Channel>("channels/", { facility: home.id, quantity: "active_power" }),
      loads: await listAll<Load>("loads/", { facility: home.id }),
    }),
    signedOut,
  );
  if (!layout.value) return <Age figures={layout} />;
  return <Live userId={userId} home={home} signedOut={signedOut} layout={layout.value} />;
}

function Live({ userId, home, signedOut, layout }: Omit<ScreenProps, "email" | "emailVerified"> & { layout: Layout }) {
  const history = useRef<[number, number][]>([]);
  // The websocket brings every 2-s sample; the API is polled only while the socket is not delivering.
  const [socketOpen, setSocketOpen] = useState(false);
  const [pushed, setPushed] = useState<PowerNow | null>(null);
  useEffect(
    () =>
      openLive(
        home.id,
        tokens()?.access,
        (latest) => {
          const value = powerNow(layout.channels, layout.loads, latest);
          saveFigures(userId, `now:${home.id}`, value);
          setPushed(value);
        },
        setSocketOpen,
      ),
    [home.id, userId],
  );
  const polled = useFigures(
    userId,
    `now:${home.id}`,
    async () => {
      const latest = await apiGet<{ results: Latest[] }>("readings/latest/", { facility: home.id, quantity: "active_power" });
      return powerNow(layout.channels, layout.loads, latest.results);
    },
    signedOut,
    socketOpen ? 0 : 2000,
    [socketOpen],
  );
  const viaSocket = socketOpen && pushed !== null;
  const live = viaSocket ? { ...polled, value: pushed, fresh: true, offline: false, failed: false } : polled;
  const now = live.value;
  if (now?.at && now.totalKw !== null) {
    const last = history.current[history.current.length - 1];
    if (!last || last[0] !== now.at) history.current = [...history.current, [now.at, now.totalKw] as [number, number]].slice(-WINDOW);
  }
  return (
    <section>
      <h2>{t("livePower")}</h2>
      <p class="big" data-testid="live-kw" data-at={now?.at ?? ""} data-fresh={live.fresh ? "1" : "0"} data-via={viaSocket ? "socket" : "poll"}>{now ? kw(now.totalKw) : t("noReading")}</p>
      <Age figures={live} at={now?.at ?? null} />
      <Sparkline points={history.current} />
      <h3>{t("perLoad")}</h3>
      {now && now.loads.length ? (
        <ul class="rows">
          {now.loads.map((load) => (
            <li key={load.id}>
              <span>{load.name}</span>
              <strong>{kw(load.kw)}</strong>
            </li>
          ))}
        </ul>
      ) : (
        <p class="muted">{t("noLoads")}</p>
      )}
    </section>
  );
}
