import { lang, setLang, t, type Lang } from "../i18n";
import type { ScreenProps } from "./common";

export function Settings({ email, emailVerified, onSignOut, onLang }: ScreenProps & { onSignOut: () => void; onLang: () => void }) {
  return (
    <section>
      <h2>{t("settings")}</h2>
      <label class="field">
        <span>{t("language")}</span>
        <select
          value={lang()}
          onChange={(e) => {
            setLang((e.currentTarget as HTMLSelectElement).value as Lang);
            onLang();
          }}
        >
          <option value="de">Deutsch</option>
          <option value="en">English</option>
        </select>
      </label>
      <label class="field">
        <span>{t("email")}</span>
        <input type="email" value={email} readOnly />
        <small class={emailVerified ? "ok" : "muted"} data-testid="email-verified">
          {emailVerified ? t("emailVerified") : t("emailUnverified")}
        </small>
      </label>
      <p class="muted">{t("tariffLead")}</p>
      <button class="secondary" onClick={onSignOut}>{t("signOut")}</button>
    </section>
  );
}
