import { apiGet, type Cost, type Energy } from "../api";
import { useFigures } from "../figures";
import { kwh, money } from "../format";
import { t } from "../i18n";
import { iso, period } from "../tz";
import { Age, type ScreenProps } from "./common";

export interface SoFar {
  kwh: number;
  yesterdayKwh: number;
  cost: number | null;
  yesterdayCost: number | null;
  currency: string;
}

/** kWh of the intervals that began before `cutoff`. */
export function kwhBefore(energy: Energy, cutoff: number): number {
  return energy.points.filter((p) => Date.parse(p.start) < cutoff).reduce((sum, p) => sum + (p.kwh ?? 0), 0);
}

export function costBefore(cost: Cost, cutoff: number): number | null {
  const priced = cost.points.filter((p) => Date.parse(p.start) < cutoff && p.cost !== null);
  return priced.length ? priced.reduce((sum, p) => sum + Number(p.cost), 0) : null;
}

export async function soFar(facility: number, tz: string, now: number): Promise<SoFar> {
  const today = period(tz, "day", now);
  const yesterday = period(tz, "day", now, 1);
  const cutoff = yesterday.start + (now - today.start);
  const range = { start: iso(yesterday.start), end: iso(now) };
  const [energy, cost] = await Promise.all([
    apiGet<Energy>(`facilities/${facility}/energy/`, { ...range, resolution: "15m" }),
    apiGet<Cost>(`facilities/${facility}/cost/`, { ...range, resolution: "1h" }),
  ]);
  const todays = (e: Energy) => ({ ...e, points: e.points.filter((p) => Date.parse(p.start) >= today.start) });
  const todaysCost = (c: Cost) => ({ ...c, points: c.points.filter((p) => Date.parse(p.start) >= today.start) });
  return {
    kwh: kwhBefore(todays(energy), now),
    yesterdayKwh: kwhBefore(energy, cutoff),
    cost: costBefore(todaysCost(cost), now),
    yesterdayCost: costBefore(cost, cutoff),
    currency: cost.currency,
  };
}

export function Today({ userId, home, signedOut }: ScreenProps) {
  const figures = useFigures(userId, `today:${home.id}`, () => soFar(home.id, home.timezone, Date.now()), signedOut, 60_000);
  const f = figures.value;
  return (
    <section>
      <h2>{t("today")}</h2>
      <div class="cards">
        <div class="card">
          <h3>{t("energyToday")}</h3>
          <p class="big" data-testid="today-kwh">{f ? kwh(f.kwh) : "–"}</p>
          <p class="muted">{t("vsYesterday", { value: f ? kwh(f.yesterdayKwh) : "–" })}</p>
        </div>
        <div class="card">
          <h3>{t("costToday")}</h3>
          <p class="big" data-testid="today-cost">{f ? money(f.cost, f.currency) : "–"}</p>
          <p class="muted">{t("vsYesterday", { value: f ? money(f.yesterdayCost, f.currency) : "–" })}</p>
        </div>
      </div>
      <Age figures={figures} />
    </section>
  );
}
