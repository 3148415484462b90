import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { apiGet, Offline, SignedOut, type Me } from "./api";
import { completeSignIn, signIn, signOut, tokens } from "./auth";
import { setLang, t, type Key } from "./i18n";
import { Bill } from "./screens/Bill";
import { Breakdown } from "./screens/Breakdown";
import type { ScreenProps } from "./screens/common";
import { Devices } from "./screens/Devices";
import { History } from "./screens/History";
import { Now } from "./screens/Now";
import { Settings } from "./screens/Settings";
import { Today } from "./screens/Today";
import { forgetFigures, saveMe, savedMe } from "./store";
import "./style.css";

const SCREENS: { id: string; key: Key }[] = [
  { id: "now", key: "now" },
  { id: "today", key: "today" },
  { id: "history", key: "history" },
  { id: "breakdown", key: "breakdown" },
  { id: "bill", key: "bill" },
  { id: "devices", key: "devices" },
  { id: "settings", key: "settings" },
];

function place(): string {
  return location.hash || "#now";
}

type State = { kind: "loading" } | { kind: "signIn"; again: boolean } | { kind: "ready"; me: Me };

function App() {
  const [state, setState] = useState<State>({ kind: "loading" });
  const [hash, setHash] = useState(place());
  const [, redraw] = useState(0);

  const signedOut = () => setState({ kind: "signIn", again: true });

  useEffect(() => {
    const onHash = () => setHash(place());
    addEventListener("hashchange", onHash);
    (async () => {
      try {
        const back = await completeSignIn(new URL(location.href));
        if (back !== null) setHash(back || "#now");
      } catch {
        setState({ kind: "signIn", again: false });
        return;
      }
      if (!tokens()) {
        setState({ kind: "signIn", again: false });
        return;
      }
      // A returning user's screens start at once from the saved profile; it is refreshed right after.
      const known = savedMe<Me>();
      if (known) setState({ kind: "ready", me: known });
      try {
        const me = await apiGet<Me>("me/");
        saveMe(me);
        // The language saved on the user (in the portal or here) follows them to this browser.
        if (me.user.language === "de" || me.user.language === "en") setLang(me.user.language);
        setState({ kind: "ready", me });
      } catch (error) {
        const saved = savedMe<Me>();
        if (error instanceof Offline && saved) setState({ kind: "ready", me: saved });
        else if (error instanceof SignedOut || !saved) setState({ kind: "signIn", again: error instanceof SignedOut });
        else setState({ kind: "ready", me: saved });
      }
    })();
    return () => removeEventListener("hashchange", onHash);
  }, []);

  if (state.kind === "loading") return <p class="boot">{t("loading")}</p>;
  if (state.kind === "signIn") {
    return (
      <main class="signin">
        <h1>{t("appName")}</h1>
        <p>{state.again ? t("signedOutAgain") : t("signInLead")}</p>
        <button data-testid="sign-in" onClick={() => signIn(place())}>
          {t("signIn")}
        </button>
        <p>
          {t("noAccount")}{" "}
          <a data-testid="sign-up" href="/signup/">
            {t("signUp")}
          </a>
        </p>
      </main>
    );
  }
  const me = state.me;
  const home = me.facilities[0];
  const current = SCREENS.find((s) => `#${s.id}` === hash) ?? SCREENS[0];
  const props: ScreenProps | null = home
    ? { userId: me.user.id, home, email: me.user.email, emailVerified: me.user.email_verified, signedOut }
    : null;
  const onSignOut = async () => {
    await signOut();
    forgetFigures();
    setState({ kind: "signIn", again: false });
  };
  return (
    <div class="shell">
      <header>
        <h1>{t("appName")}</h1>
        {home && <span class="muted">{home.name}</span>}
      </header>
      <main>
        {!props && <p>{t("noHome")}</p>}
        {props && current.id === "now" && <Now {...props} />}
        {props && current.id === "today" && <Today {...props} />}
        {props && current.id === "history" && <History {...props} />}
        {props && current.id === "breakdown" && <Breakdown {...props} />}
        {props && current.id === "bill" && <Bill {...props} />}
        {props && current.id === "devices" && <Devices {...props} />}
        {current.id === "settings" && (
          <Settings
            {...(props ?? {
              userId: me.user.id,
              home: { id: 0, name: "", timezone: "UTC" },
              email: me.user.email,
              emailVerified: me.user.email_verified,
              signedOut,
            })}
            onSignOut={onSignOut}
            onLang={() => redraw((n) => n + 1)}
          />
        )}
      </main>
      <nav>
        {SCREENS.map((s) => (
          <a key={s.id} href={`#${s.id}`} aria-current={s.id === current.id ? "page" : undefined}>
            {t(s.key)}
          </a>
        ))}
      </nav>
    </div>
  );
}

setLang((localStorage.getItem("eb:lang") as "de" | "en" | null) ?? (navigator.language.startsWith("de") ? "de" : "en"), false);
render(<App />, document.getElementById("app")!);

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" }).catch(() => undefined);
}
