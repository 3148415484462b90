import { useState } from "preact/hooks";
import { ApiError, apiPost, listAll, SignedOut, type Device } from "../api";
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
      <Claim facility={home.id} signedOut={signedOut} />
    </section>
  );
}

/** Claiming the meter with the serial and claim code from its label (the platform's claim service). */
function Claim({ facility, signedOut }: { facility: number; signedOut: () => void }) {
  const [message, setMessage] = useState<{ ok: boolean; text: string } | null>(null);
  const submit = async (event: Event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget as HTMLFormElement);
    try {
      await apiPost("devices/claim/", { serial: form.get("serial"), claim_code: form.get("claim_code"), facility });
      setMessage({ ok: true, text: t("claimed") });
    } catch (error) {
      if (error instanceof SignedOut) return signedOut();
      const limited = error instanceof ApiError && error.status === 429;
      setMessage({ ok: false, text: limited ? t("tooMany") : t("claimRefused") });
    }
  };
  return (
    <form class="claim" onSubmit={submit}>
      <h3>{t("claimTitle")}</h3>
      <p class="muted">{t("claimLead")}</p>
      <label class="field">
        <span>{t("serial")}</span>
        <input name="serial" required maxLength={64} autocomplete="off" />
      </label>
      <label class="field">
        <span>{t("claimCode")}</span>
        <input name="claim_code" required maxLength={32} autocomplete="off" />
      </label>
      <button type="submit">{t("claim")}</button>
      {message && <p class={message.ok ? "ok" : "bad"} data-testid="claim-result">{message.text}</p>}
    </form>
  );
}
