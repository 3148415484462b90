import { useState } from "preact/hooks";
import { apiGet, type Cost, type Energy } from "../api";
import { Bars } from "../charts";
import { useFigures } from "../figures";
import { kwh, label, money, percent } from "../format";
import { t } from "../i18n";
import { iso, localParts, period, zoned, type Period, type PeriodKind } from "../tz";
import { Age, type ScreenProps } from "./common";

/** The interval starts of a period, in its resolution. */
export function edges(tz: string, p: Period): number[] {
  const out: number[] = [];
  const first = localParts(tz, p.start);
  for (let i = 0; ; i++) {
    const at =
      p.resolution === "1h"
        ? p.start + i * 3_600_000
        : p.resolution === "1d"
          ? zoned(tz, first.year, first.month, first.day + i)
          : zoned(tz, first.year, first.month + i, 1);
    if (at >= p.end) return out;
    out.push(at);
  }
}

/** The values of `points` on the slots of `slots` (null where a slot has none). */
export function onSlots(slots: number[], points: { start: string; value: number | null }[]): (number | null)[] {
  const byStart = new Map(points.map((p) => [Date.parse(p.start), p.value]));
  return slots.map((s) => byStart.get(s) ?? null);
}

interface Compared {
  slots: number[];
  current: (number | null)[];
  previous: (number | null)[];
  currency: string;
}

async function compared(facility: number, tz: string, kind: PeriodKind, unit: "kwh" | "money"): Promise<Compared> {
  const now = Date.now();
  const current = period(tz, kind, now);
  const previous = period(tz, kind, now, 1);
  const fetchOne = async (p: Period) => {
    const query = { start: iso(p.start), end: iso(p.end), resolution: p.resolution };
    if (unit === "kwh") {
      const e = await apiGet<Energy>(`facilities/${facility}/energy/`, query);
      return { currency: "", points: e.points.map((x) => ({ start: x.start, value: x.kwh })) };
    }
    const c = await apiGet<Cost>(`facilities/${facility}/cost/`, query);
    return { currency: c.currency, points: c.points.map((x) => ({ start: x.start, value: x.cost === null ? null : Number(x.cost) })) };
  };
  const [a, b] = await Promise.all([fetchOne(current), fetchOne(previous)]);
  const slots = edges(tz, current);
  const before = onSlots(edges(tz, previous), b.points);
  return { slots, current: onSlots(slots, a.points), previous: slots.map((_, i) => before[i] ?? null), currency: a.currency || b.currency };
}

const sum = (values: (number | null)[]) => values.reduce<number>((s, v) => s + (v ?? 0), 0);

export function History({ userId, home, signedOut }: ScreenProps) {
  const [kind, setKind] = useState<PeriodKind>("week");
  const [unit, setUnit] = useState<"kwh" | "money">("kwh");
  const figures = useFigures(
    userId,
    `history:${home.id}:${kind}:${unit}`,
    () => compared(home.id, home.timezone, kind, unit),
    signedOut,
    0,
    [kind, unit],
  );
  const f = figures.value;
  const resolution = period(home.timezone, kind, Date.now()).resolution;
  const fmt = (v: number | null) => (unit === "kwh" ? kwh(v) : money(v, f?.currency ?? "EUR"));
  const total = f ? sum(f.current) : null;
  const before = f ? sum(f.previous) : null;
  return (
    <section>
      <h2>{t("history")}</h2>
      <div class="tabs" role="tablist">
        {(["day", "week", "month", "year"] as PeriodKind[]).map((k) => (
          <button key={k} role="tab" aria-selected={k === kind} onClick={() => setKind(k)}>
            {t(k)}
          </button>
        ))}
      </div>
      <div class="tabs" role="tablist">
        <button role="tab" aria-selected={unit === "kwh"} onClick={() => setUnit("kwh")}>{t("inKwh")}</button>
        <button role="tab" aria-selected={unit === "money"} onClick={() => setUnit("money")}>{t("inMoney")}</button>
      </div>
      {f && (
        <>
          <Bars labels={f.slots.map((s) => label(s, home.timezone, resolution))} values={f.current} previous={f.previous} format={fmt} />
          <ul class="rows">
            <li><span>{t("thisPeriod")}</span><strong data-testid="history-total">{fmt(total)}</strong></li>
            <li><span>{t("previousPeriod")}</span><strong>{fmt(before)}</strong></li>
            <li><span>{t("change")}</span><strong>{percent(before ? (total! - before) / before : null)}</strong></li>
          </ul>
        </>
      )}
      <Age figures={figures} />
    </section>
  );
}
