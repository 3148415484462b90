import { listAll, type Device } from "../api";
import { useFigures } from "../figures";
import { age } from "../format";
import { t } from "../i18n";
import { Age, type ScreenProps } from "./common";

// A device reports every 2 s; a minute of silence is offline.
export const ONLINE_MS = 60_000;

export function isOnline(device: Device, now: number): boolean {
  return device.last_seen !== null && now - Date.parse(device.last_seen) < ONLINE_MS;
}

export function Devices({ userId, home, signedOut }: ScreenProps) {
  const figures = useFigures(userId, `devices:${home.id}`, () => listAll<Device>("devices/", { facility: home.id }), signedOut, 30_000);
  const now = Date.now();
  return (
    <section>
      <h2>{t("devices")}</h2>
      <ul class="rows">
        {(figures.value ?? []).map((d) => (
          <li key={d.id}>
            <span>
              {d.name || d.serial}
              <small class="muted"> {d.last_seen ? t("lastSeen", { when: age(Date.parse(d.last_seen), now) }) : t("neverSeen")}</small>
            </span>
            <strong class={isOnline(d, now) ? "ok" : "bad"}>{isOnline(d, now) ? t("online") : t("offlineDevice")}</strong>
          </li>
        ))}
      </ul>
      <Age figures={figures} />
    </section>
  );
}
