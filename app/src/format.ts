// Numbers, money, dates and ages for the chosen language, with Intl.
import { lang } from "./i18n";

const locale = () => (lang() === "de" ? "de-DE" : "en-GB");

export function kw(value: number | null): string {
  if (value === null || Number.isNaN(value)) return "–";
  return `${new Intl.NumberFormat(locale(), { maximumFractionDigits: value < 10 ? 2 : 1 }).format(value)} kW`;
}

export function kwh(value: number | null): string {
  if (value === null || Number.isNaN(value)) return "–";
  return `${new Intl.NumberFormat(locale(), { maximumFractionDigits: value < 100 ? 1 : 0 }).format(value)} kWh`;
}

export function money(value: number | string | null, currency: string): string {
  if (value === null || value === "") return "–";
  return new Intl.NumberFormat(locale(), { style: "currency", currency: currency || "EUR" }).format(Number(value));
}

/** A price per kWh with the decimals tariffs use (0,3125 €). */
export function perKwh(value: number | string, currency: string): string {
  return new Intl.NumberFormat(locale(), { style: "currency", currency, minimumFractionDigits: 2, maximumFractionDigits: 4 }).format(
    Number(value),
  );
}

/** A calendar day given as ISO 8601 (2026-12-02), as the language writes it. */
export function day(iso: string): string {
  return new Intl.DateTimeFormat(locale(), { dateStyle: "medium", timeZone: "UTC" }).format(Date.parse(`${iso}T00:00:00Z`));
}

export function percent(value: number | null): string {
  if (value === null || !Number.isFinite(value)) return "–";
  return new Intl.NumberFormat(locale(), { style: "percent", maximumFractionDigits: 0, signDisplay: "exceptZero" }).format(value);
}

export function dateTime(ms: number, tz: string): string {
  return new Intl.DateTimeFormat(locale(), { timeZone: tz, dateStyle: "medium", timeStyle: "short" }).format(ms);
}

export function label(ms: number, tz: string, resolution: string): string {
  const options: Intl.DateTimeFormatOptions =
    resolution === "1h" ? { hour: "2-digit" } : resolution === "1d" ? { day: "numeric", month: "numeric" } : { month: "short" };
  return new Intl.DateTimeFormat(locale(), { timeZone: tz, ...options }).format(ms);
}

/** "3 minutes ago", in the chosen language. */
export function age(ms: number, now: number = Date.now()): string {
  const seconds = Math.round((ms - now) / 1000);
  const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto" });
  const abs = Math.abs(seconds);
  if (abs < 60) return rtf.format(seconds, "second");
  if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 86400), "day");
}
