// The facility's live total and each load's power, by the platform's rule (readings/totals.py):
// per device and load, an all-phase channel stands for the device, else its phases add up; the
// total is the mains load where there is one, else the sum of every load.
import type { Channel, Latest, Load } from "./api";

const TO_KW: Record<string, number> = { W: 0.001, kW: 1 };

export interface PowerNow {
  totalKw: number | null;
  loads: { id: number; name: string; kw: number }[];
  at: number | null; // ms of the newest reading counted
}

export function powerNow(channels: Channel[], loads: Load[], latest: Latest[]): PowerNow {
  const byId = new Map(latest.map((l) => [l.channel, l]));
  const groups = new Map<string, Channel[]>();
  for (const c of channels) {
    if (c.quantity !== "active_power" || !(c.unit in TO_KW)) continue;
    const key = `${c.device}:${c.load ?? ""}`;
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  const counted: Channel[] = [];
  for (const group of groups.values()) {
    const totals = group.filter((c) => c.phase === "total");
    counted.push(...(totals.length ? totals : group));
  }
  const mains = new Set(loads.filter((l) => l.kind === "mains").map((l) => l.id));
  const countedMains = new Set(counted.filter((c) => c.load !== null && mains.has(c.load)).map((c) => c.load));
  const perLoad = new Map<number, number>();
  let total: number | null = null;
  let at: number | null = null;
  for (const c of counted) {
    const reading = byId.get(c.id);
    if (!reading || reading.value === null || reading.t === null) continue;
    const kw = reading.value * TO_KW[c.unit];
    at = Math.max(at ?? 0, Date.parse(reading.t));
    if (c.load !== null && !countedMains.has(c.load)) perLoad.set(c.load, (perLoad.get(c.load) ?? 0) + kw);
    if (countedMains.size === 0 || (c.load !== null && countedMains.has(c.load))) total = (total ?? 0) + kw;
  }
  const names = new Map(loads.map((l) => [l.id, l.name]));
  return {
    totalKw: total,
    loads: [...perLoad].map(([id, kw]) => ({ id, name: names.get(id) ?? `#${id}`, kw })).sort((a, b) => b.kw - a.kw),
    at,
  };
}
