import { useState } from "preact/hooks";
import { ApiError, apiSend, type Me } from "../api";
import { lang, setLang, t, type Lang } from "../i18n";
import type { ScreenProps } from "./common";

export function Settings({ email, emailVerified, onSignOut, onLang }: ScreenProps & { onSignOut: () => void; onLang: () => void }) {
  const [address, setAddress] = useState(email);
  const [verified, setVerified] = useState(emailVerified);
  const [note, setNote] = useState<{ text: string; error: boolean } | null>(null);
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
      <p class="muted">{t("tariffLead")}</p>
      <button class="secondary" onClick={onSignOut}>{t("signOut")}</button>
    </section>
  );
}
