import { useState } from "preact/hooks";
import { apiGet, ApiError, apiSend, type Me } from "../api";
import { useFigures } from "../figures";
import { day, money, perKwh } from "../format";
import { lang, setLang, t, type Lang } from "../i18n";
import { saveFigures } from "../store";
import { tariffChange, type HouseholdTariff } from "../tariff";
import type { ScreenProps } from "./common";

type Note = { text: string; error: boolean } | null;

function Tariff({ userId, home, signedOut }: ScreenProps) {
  const [saved, setSaved] = useState<HouseholdTariff | null>(null);
  const figures = useFigures<HouseholdTariff>(userId, `tariff:${home.id}`, () => apiGet<HouseholdTariff>("me/tariff/", { facility: home.id }), signedOut);
  const current = (saved ?? figures.value)?.tariff ?? null;
  const [price, setPrice] = useState("");
  const [standing, setStanding] = useState("");
  const [currency, setCurrency] = useState("");
  const [note, setNote] = useState<Note>(null);
  const save = async (event: Event) => {
    event.preventDefault();
    const change = tariffChange(home.id, { price, standing, currency: currency || current?.currency || "EUR" });
    if ("error" in change) {
      setNote({ text: t(change.error), error: true });
      return;
    }
    try {
      const answer = await apiSend<HouseholdTariff>("PUT", "me/tariff/", change.body);
      saveFigures(userId, `tariff:${home.id}`, answer, Date.now());
      setSaved(answer);
      setNote({ text: t("tariffSaved", { date: answer.tariff ? day(answer.tariff.valid_from) : "" }), error: false });
    } catch (error) {
      setNote({ text: error instanceof ApiError ? error.message : t("saveFailed"), error: true });
    }
  };
  return (
    <div data-testid="tariff">
      <h3>{t("tariff")}</h3>
      <p class="muted">{t("tariffLead")}</p>
      {current ? (
        <dl class="terms" data-testid="tariff-current">
          <dt>{current.name}</dt>
          <dd>{t("tariffSince", { date: day(current.valid_from) })}</dd>
          <dt>{t("tariffPrice")}</dt>
          <dd data-testid="tariff-price" data-value={current.price_per_kwh ?? ""}>
            {current.price_per_kwh === null ? t("tariffTimeOfUse") : perKwh(current.price_per_kwh, current.currency)}
          </dd>
          <dt>{t("tariffStanding")}</dt>
          <dd data-testid="tariff-standing" data-value={current.standing_charge_per_month}>
            {money(current.standing_charge_per_month, current.currency)}
          </dd>
        </dl>
      ) : (
        figures.value && <p class="muted">{t("tariffNone")}</p>
      )}
      <form onSubmit={save} data-testid="tariff-form" noValidate>
        <h4>{t("tariffSetOwn")}</h4>
        <p class="muted">{t("tariffOwnLead")}</p>
        <label class="field">
          <span>{t("tariffPrice")}</span>
          <input name="price" inputMode="decimal" required value={price} onInput={(e) => setPrice((e.currentTarget as HTMLInputElement).value)} />
        </label>
        <label class="field">
          <span>{t("tariffStanding")}</span>
          <input name="standing" inputMode="decimal" required value={standing} onInput={(e) => setStanding((e.currentTarget as HTMLInputElement).value)} />
        </label>
        <label class="field">
          <span>{t("tariffCurrency")}</span>
          <input
            name="currency"
            maxLength={3}
            autocapitalize="characters"
            placeholder={current?.currency ?? "EUR"}
            value={currency}
            onInput={(e) => setCurrency((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <button type="submit" class="secondary">{t("tariffSave")}</button>
        {note && <p class={note.error ? "error" : "ok"} data-testid="tariff-note">{note.text}</p>}
      </form>
    </div>
  );
}

export function Settings(props: ScreenProps & { onSignOut: () => void; onLang: () => void }) {
  const { email, emailVerified, onSignOut, onLang } = props;
  const [address, setAddress] = useState(email);
  const [verified, setVerified] = useState(emailVerified);
  const [note, setNote] = useState<Note>(null);
  const saveEmail = async (event: Event) => {
    event.preventDefault();
    try {
      const me = await apiSend<Me>("PATCH", "me/", { email: address });
      setAddress(me.user.email);
      setVerified(me.user.email_verified);
      setNote(me.user.email_verified ? null : { text: t("emailSent", { email: me.user.email }), error: false });
    } catch (error) {
      setNote({ text: error instanceof ApiError ? error.message : t("saveFailed"), error: true });
    }
  };
  return (
    <section>
      <h2>{t("settings")}</h2>
      <label class="field">
        <span>{t("language")}</span>
        <select
          value={lang()}
          onChange={(e) => {
            const chosen = (e.currentTarget as HTMLSelectElement).value as Lang;
            setLang(chosen);
            onLang();
            // Saved on the user, as the portal's language switch does; offline the app keeps it locally.
            apiSend("PATCH", "me/", { language: chosen }).catch(() => undefined);
          }}
        >
          <option value="de">Deutsch</option>
          <option value="en">English</option>
        </select>
      </label>
      <form class="field" onSubmit={saveEmail} data-testid="email-form">
        <label for="email">{t("email")}</label>
        <input id="email" type="email" required maxLength={254} value={address} onInput={(e) => setAddress((e.currentTarget as HTMLInputElement).value)} />
        <small class={verified ? "ok" : "muted"} data-testid="email-verified">
          {verified ? t("emailVerified") : t("emailUnverified")}
        </small>
        <button type="submit" class="secondary" disabled={address === email && verified}>{t("saveEmail")}</button>
        {note && <p class={note.error ? "error" : "ok"} data-testid="email-note">{note.text}</p>}
      </form>
      {props.home.id > 0 && <Tariff {...props} />}
      <button class="secondary" onClick={onSignOut}>{t("signOut")}</button>
    </section>
  );
}
