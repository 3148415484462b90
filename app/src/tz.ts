// Calendar arithmetic in the facility's time zone, with Intl only.

export interface LocalParts {
  year: number;
  month: number; // 1..12
  day: number;
  hour: number;
  minute: number;
  weekday: number; // 0 = Monday
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
      weekday: "short",
    });
    formatters.set(tz, f);
  }
  return f;
}

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

export function localParts(tz: string, at: number): LocalParts & { second: number } {
  const parts: Record<string, string> = {};
  for (const p of formatter(tz).formatToParts(new Date(at))) parts[p.type] = p.value;
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    hour: Number(parts.hour),
    minute: Number(parts.minute),
    second: Number(parts.second),
    weekday: WEEKDAYS.indexOf(parts.weekday),
  };
}

export function offsetMs(tz: string, at: number): number {
  const p = localParts(tz, at);
  const asUtc = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second);
  return asUtc - Math.floor(at / 1000) * 1000;
}

/** The instant of a local wall-clock time in `tz` (month and day may overflow, like Date.UTC). */
export function zoned(tz: string, year: number, month: number, day: number, hour = 0): number {
  const guess = Date.UTC(year, month - 1, day, hour);
  const first = guess - offsetMs(tz, guess);
  const second = guess - offsetMs(tz, first);
  return second;
}

export type PeriodKind = "day" | "week" | "month" | "year";

export interface Period {
  start: number;
  end: number;
  resolution: "1h" | "1d" | "1mo";
}

/** The calendar period containing `at`, or `back` periods before it. */
export function period(tz: string, kind: PeriodKind, at: number, back = 0): Period {
  const p = localParts(tz, at);
  if (kind === "day") {
    return { start: zoned(tz, p.year, p.month, p.day - back), end: zoned(tz, p.year, p.month, p.day - back + 1), resolution: "1h" };
  }
  if (kind === "week") {
    const monday = p.day - p.weekday - 7 * back;
    return { start: zoned(tz, p.year, p.month, monday), end: zoned(tz, p.year, p.month, monday + 7), resolution: "1d" };
  }
  if (kind === "month") {
    return { start: zoned(tz, p.year, p.month - back, 1), end: zoned(tz, p.year, p.month - back + 1, 1), resolution: "1d" };
  }
  return { start: zoned(tz, p.year - back, 1, 1), end: zoned(tz, p.year - back + 1, 1, 1), resolution: "1mo" };
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}
