// The app's own message catalogue, English and German. Every string a user reads comes from here.

const en = {
  appName: "Energybox",
  signIn: "Sign in",
  signInLead: "Sign in with your Energybox account. If you are signed in to the portal, one click is enough.",
  signedOutAgain: "Your session has ended. Sign in again to carry on where you were.",
  noAccount: "New to Energybox?",
  signUp: "Sign up your household",
  signOut: "Sign out",
  now: "Now",
  today: "Today",
  history: "History",
  breakdown: "Breakdown",
  bill: "Bill",
  devices: "Devices",
  settings: "Settings",
  livePower: "Live power",
  perLoad: "Per circuit",
  noLoads: "No circuits are metered separately.",
  noReading: "No reading yet",
  updated: "Updated {age}",
  offline: "Offline: figures from {age}",
  offlineNoData: "Offline, and nothing saved yet.",
  energyToday: "Energy so far",
  costToday: "Cost so far",
  vsYesterday: "Yesterday at this time: {value}",
  day: "Day",
  week: "Week",
  month: "Month",
  year: "Year",
  inKwh: "kWh",
  inMoney: "Money",
  thisPeriod: "This period",
  previousPeriod: "Previous period",
  change: "Change",
  loadShare: "Share of this month",
  unmetered: "Everything else",
  billSoFar: "This month so far",
  billProjected: "Projected to month end",
  billIncludes: "Includes the standing charge and every fixed charge of your tariff.",
  billNoContract: "No tariff is set for your home yet.",
  online: "Online",
  offlineDevice: "Offline",
  lastSeen: "Last seen {when}",
  neverSeen: "Never seen",
  language: "Language",
  email: "Notification e-mail",
  emailVerified: "Confirmed",
  emailUnverified: "Not confirmed yet: the portal sends you a confirmation link.",
  saveEmail: "Save e-mail",
  emailSent: "We sent a confirmation link to {email}.",
  saveFailed: "Could not save; try again when you are online.",
  tariff: "Tariff",
  tariffLead: "Your tariff as the platform prices it. Your provider or installer changes it.",
  home: "Home",
  noHome: "No home is linked to your account yet. Claim your meter with the serial and code on its label.",
  claimTitle: "Add your meter",
  claimLead: "Enter the serial number and the claim code from the meter's label.",
  serial: "Serial number",
  claimCode: "Claim code",
  claim: "Add meter",
  claimed: "Your meter is added. Live values appear within a few seconds.",
  tooMany: "Too many attempts. Try again in 15 minutes.",
  claimRefused: "This serial number and code do not match a meter that can be added.",
  loading: "Loading…",
  error: "Something went wrong. Try again in a moment.",
};

export type Key = keyof typeof en;

const de: Record<Key, string> = {
  appName: "Energybox",
  signIn: "Anmelden",
  signInLead: "Melden Sie sich mit Ihrem Energybox-Konto an. Sind Sie im Portal angemeldet, genügt ein Klick.",
  noAccount: "Neu bei Energybox?",
  signUp: "Haushalt registrieren",
  signedOutAgain: "Ihre Sitzung ist abgelaufen. Melden Sie sich erneut an, um dort weiterzumachen, wo Sie waren.",
  signOut: "Abmelden",
  now: "Jetzt",
  today: "Heute",
  history: "Verlauf",
  breakdown: "Aufteilung",
  bill: "Rechnung",
  devices: "Geräte",
  settings: "Einstellungen",
  livePower: "Aktuelle Leistung",
  perLoad: "Je Stromkreis",
  noLoads: "Keine Stromkreise werden einzeln gemessen.",
  noReading: "Noch kein Messwert",
  updated: "Aktualisiert {age}",
  offline: "Offline: Werte von {age}",
  offlineNoData: "Offline, und noch nichts gespeichert.",
  energyToday: "Energie bisher",
  costToday: "Kosten bisher",
  vsYesterday: "Gestern um diese Zeit: {value}",
  day: "Tag",
  week: "Woche",
  month: "Monat",
  year: "Jahr",
  inKwh: "kWh",
  inMoney: "Geld",
  thisPeriod: "Dieser Zeitraum",
  previousPeriod: "Vorheriger Zeitraum",
  change: "Veränderung",
  loadShare: "Anteil in diesem Monat",
  unmetered: "Alles andere",
  billSoFar: "Dieser Monat bisher",
  billProjected: "Hochrechnung bis Monatsende",
  billIncludes: "Enthält den Grundpreis und alle festen Entgelte Ihres Tarifs.",
  billNoContract: "Für Ihr Zuhause ist noch kein Tarif hinterlegt.",
  online: "Online",
  offlineDevice: "Offline",
  lastSeen: "Zuletzt gesehen {when}",
  neverSeen: "Nie gesehen",
  language: "Sprache",
  email: "E-Mail für Benachrichtigungen",
  emailVerified: "Bestätigt",
  emailUnverified: "Noch nicht bestätigt: Das Portal schickt Ihnen einen Bestätigungslink.",
  saveEmail: "E-Mail speichern",
  emailSent: "Wir haben einen Bestätigungslink an {email} geschickt.",
  saveFailed: "Nicht gespeichert; versuchen Sie es wieder, wenn Sie online sind.",
  tariff: "Tarif",
  tariffLead: "Ihr Tarif, wie die Plattform ihn berechnet. Ihr Anbieter oder Installateur ändert ihn.",
  home: "Zuhause",
  noHome: "Mit Ihrem Konto ist noch kein Zuhause verknüpft. Registrieren Sie Ihren Zähler mit Seriennummer und Code vom Etikett.",
  claimTitle: "Zähler hinzufügen",
  claimLead: "Geben Sie die Seriennummer und den Code vom Etikett des Zählers ein.",
  serial: "Seriennummer",
  claimCode: "Code",
  claim: "Zähler hinzufügen",
  claimed: "Ihr Zähler ist hinzugefügt. Live-Werte erscheinen in wenigen Sekunden.",
  tooMany: "Zu viele Versuche. Versuchen Sie es in 15 Minuten erneut.",
  claimRefused: "Seriennummer und Code passen zu keinem Zähler, der hinzugefügt werden kann.",
  loading: "Wird geladen …",
  error: "Etwas ist schiefgelaufen. Versuchen Sie es gleich noch einmal.",
};

export const CATALOGUES: Record<"en" | "de", Record<Key, string>> = { en, de };
export type Lang = keyof typeof CATALOGUES;
const LANG = "eb:lang";

let current: Lang = initial();

function initial(): Lang {
  const saved = typeof localStorage !== "undefined" ? localStorage.getItem(LANG) : null;
  if (saved === "de" || saved === "en") return saved;
  const browser = typeof navigator !== "undefined" ? navigator.language : "en";
  return browser.toLowerCase().startsWith("de") ? "de" : "en";
}

export function lang(): Lang {
  return current;
}

export function setLang(value: Lang, remember = true): void {
  current = value;
  if (remember && typeof localStorage !== "undefined") localStorage.setItem(LANG, value);
  if (typeof document !== "undefined") document.documentElement.lang = value;
}

export function t(key: Key, values: Record<string, string> = {}): string {
  const text = CATALOGUES[current][key] ?? en[key];
  return text.replace(/\{(\w+)\}/g, (_, name: string) => values[name] ?? `{${name}}`);
}
