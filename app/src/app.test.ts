import { beforeEach, describe, expect, it } from "vitest";
import type { Channel, Energy, Latest, Load } from "./api";
import { day, perKwh } from "./format";
import { CATALOGUES, setLang } from "./i18n";
import { liveUrl, mergeLive } from "./live";
import { challengeFor } from "./pkce";
import { tariffChange } from "./tariff";
import { shares } from "./screens/Breakdown";
import { edges, onSlots } from "./screens/History";
import { costBefore, kwhBefore } from "./screens/Today";
import { powerNow } from "./totals";
import { localParts, period, zoned } from "./tz";

describe("PKCE", () => {
  it("derives the S256 challenge: base64url of the verifier's SHA-256, unpadded", async () => {
    const verifier = "dBjftJeZ4CVP-mB92K9uhvlJ3vZx2vL6pRn0yNgx8bW";
    // Computed by Python's hashlib: sha256 + urlsafe_b64encode, '=' stripped.
    expect(await challengeFor(verifier)).toBe("1N4sa94Dc7mjUKUVq21GoTt5rcfOQuPtmioJYijgTK8");
  });
});

const channel = (id: number, device: number, load: number | null, phase = "total", unit = "W"): Channel => ({
  id,
  device,
  facility: 1,
  name: `c${id}`,
  quantity: "active_power",
  unit,
  phase,
  load,
});

describe("powerNow", () => {
  const at = "2026-12-01T10:00:00+01:00";
  it("takes the mains meter as the total and lists the other loads", () => {
    const loads: Load[] = [
      { id: 1, facility: 1, name: "Mains", kind: "mains" },
      { id: 2, facility: 1, name: "Heat pump", kind: "hvac" },
    ];
    const now = powerNow([channel(10, 1, 1), channel(11, 2, 2)], loads, [
      { channel: 10, t: at, value: 3000 },
      { channel: 11, t: at, value: 1200 },
    ]);
    expect(now.totalKw).toBeCloseTo(3.0);
    expect(now.loads).toEqual([{ id: 2, name: "Heat pump", kw: 1.2 }]);
    expect(now.at).toBe(Date.parse(at));
  });

  it("adds the phases only where a device has no all-phase channel, and every load without mains", () => {
    const loads: Load[] = [{ id: 2, facility: 1, name: "Kitchen", kind: "other" }];
    const now = powerNow(
      [channel(1, 1, 2, "L1"), channel(2, 1, 2, "L2"), channel(3, 2, null, "total", "kW"), channel(4, 2, null, "L1", "kW")],
      loads,
      [
        { channel: 1, t: at, value: 100 },
        { channel: 2, t: at, value: 200 },
        { channel: 3, t: at, value: 1.5 },
        { channel: 4, t: at, value: 0.7 },
      ],
    );
    expect(now.totalKw).toBeCloseTo(0.3 + 1.5);
    expect(now.loads[0].kw).toBeCloseTo(0.3);
  });

  it("has no total before any reading", () => {
    expect(powerNow([channel(1, 1, null)], [], [{ channel: 1, t: null, value: null }]).totalKw).toBeNull();
  });
});

describe("calendar in the facility's time zone", () => {
  const tz = "Europe/Berlin";
  it("finds local midnight on both sides of a DST change", () => {
    expect(new Date(zoned(tz, 2026, 3, 29)).toISOString()).toBe("2026-03-28T23:00:00.000Z");
    expect(new Date(zoned(tz, 2026, 3, 30)).toISOString()).toBe("2026-03-29T22:00:00.000Z");
    expect(new Date(zoned(tz, 2026, 13, 1)).toISOString()).toBe("2026-12-31T23:00:00.000Z");
  });

  it("gives the week from Monday and the previous month", () => {
    const wednesday = Date.parse("2026-12-02T12:00:00Z");
    const week = period(tz, "week", wednesday);
    expect(localParts(tz, week.start)).toMatchObject({ year: 2026, month: 11, day: 30, hour: 0, weekday: 0 });
    expect(week.end - week.start).toBe(7 * 86_400_000);
    const before = period(tz, "month", wednesday, 1);
    expect(new Date(before.start).toISOString()).toBe("2026-10-31T23:00:00.000Z");
    expect(new Date(before.end).toISOString()).toBe("2026-11-30T23:00:00.000Z");
    expect(period(tz, "year", wednesday).resolution).toBe("1mo");
  });

  it("lays a 23-hour day out as 23 hourly slots and a year as 12 months", () => {
    expect(edges(tz, period(tz, "day", Date.parse("2026-03-29T12:00:00Z")))).toHaveLength(23);
    expect(edges(tz, period(tz, "year", Date.parse("2026-03-29T12:00:00Z")))).toHaveLength(12);
  });
});

describe("figures", () => {
  const energy: Energy = {
    points: [
      { start: "2026-12-01T00:00:00+01:00", end: "2026-12-01T00:15:00+01:00", kwh: 1 },
      { start: "2026-12-01T00:15:00+01:00", end: "2026-12-01T00:30:00+01:00", kwh: 2 },
      { start: "2026-12-01T00:30:00+01:00", end: "2026-12-01T00:45:00+01:00", kwh: null },
    ],
    loads: [
      { load: 1, name: "Heat pump", kind: "hvac", kwh: [0.5, 0.5, null], total_kwh: 1 },
      { load: 2, name: "Kitchen", kind: "other", kwh: [0.2, 0.3, null], total_kwh: 0.5 },
    ],
  };

  it("adds up only the intervals that began before the cut-off", () => {
    expect(kwhBefore(energy, Date.parse("2026-12-01T00:15:00+01:00"))).toBe(1);
    expect(kwhBefore(energy, Date.parse("2026-12-01T01:00:00+01:00"))).toBe(3);
    const cost = {
      currency: "EUR",
      points: [
        { start: "2026-12-01T00:00:00+01:00", end: "x", cost: "0.40" },
        { start: "2026-12-01T01:00:00+01:00", end: "x", cost: null },
      ],
    };
    expect(costBefore(cost, Date.parse("2026-12-01T02:00:00+01:00"))).toBeCloseTo(0.4);
    expect(costBefore({ ...cost, points: [] }, Date.now())).toBeNull();
  });

  it("puts points on their slots and leaves gaps empty", () => {
    const slots = [Date.parse("2026-12-01T00:00:00+01:00"), Date.parse("2026-12-01T01:00:00+01:00")];
    expect(onSlots(slots, [{ start: "2026-11-30T23:00:00Z", value: 4 }])).toEqual([4, null]);
  });

  it("shares each load of the total and names what the submeters miss", () => {
    const rows = shares(energy, "Everything else");
    expect(rows.map((r) => r.name)).toEqual(["Everything else", "Heat pump", "Kitchen"]);
    expect(rows[0].kwh).toBeCloseTo(1.5);
    expect(rows.reduce((s, r) => s + r.share, 0)).toBeCloseTo(1);
  });
});

describe("messages", () => {
  it("has every English message in German too, and no empty one", () => {
    for (const [key, text] of Object.entries(CATALOGUES.en)) {
      expect(CATALOGUES.de[key as keyof typeof CATALOGUES.de], key).toBeTruthy();
      expect(text).toBeTruthy();
    }
  });
});

describe("saved figures", () => {
  beforeEach(() => {
    const data = new Map<string, string>();
    (globalThis as unknown as { localStorage: Storage }).localStorage = {
      getItem: (k: string) => data.get(k) ?? null,
      setItem: (k: string, v: string) => void data.set(k, v),
      removeItem: (k: string) => void data.delete(k),
      key: (i: number) => [...data.keys()][i] ?? null,
      get length() {
        return data.size;
      },
      clear: () => data.clear(),
    };
  });

  it("keeps each user's figures apart and forgets them all on sign-out", async () => {
    const { forgetFigures, saveFigures, savedFigures } = await import("./store");
    saveFigures(1, "now", { kw: 2 }, 1000);
    expect(savedFigures(1, "now")).toEqual({ savedAt: 1000, value: { kw: 2 } });
    expect(savedFigures(2, "now")).toBeNull();
    forgetFigures();
    expect(savedFigures(1, "now")).toBeNull();
  });
});

describe("live websocket", () => {
  it("addresses the facility's socket on the page's host", () => {
    expect(liveUrl(7, "https://eb.example")).toBe("wss://eb.example/ws/facilities/7/live");
    expect(liveUrl(7, "http://localhost:8000")).toBe("ws://localhost:8000/ws/facilities/7/live");
  });

  it("keeps each channel's newest non-null sample from the snapshot and the readings", () => {
    const latest = new Map<number, Latest>();
    const t0 = Date.UTC(2026, 0, 1, 12, 0, 0);
    const snapshot = { type: "snapshot", series: { "3": { ts: [t0, t0 + 2000], values: [100, null] }, "4": { ts: [t0], values: [5] } } };
    expect(mergeLive(latest, snapshot)).toBe(true);
    expect(latest.get(3)).toEqual({ channel: 3, t: new Date(t0).toISOString(), value: 100 });
    expect(mergeLive(latest, { type: "readings", ts: [t0 + 4000], values: { "3": [250.5] } })).toBe(true);
    expect(latest.get(3)?.value).toBe(250.5);
    expect(latest.get(4)?.value).toBe(5);
    // An older sample (a late message) and messages of other kinds change nothing.
    expect(mergeLive(latest, { type: "readings", ts: [t0 + 2000], values: { "3": [1] } })).toBe(false);
    expect(mergeLive(latest, { type: "status" })).toBe(false);
    expect(latest.get(3)?.value).toBe(250.5);
  });
});

describe("the household's own tariff", () => {
  it("sends the prices as the form has them, a decimal comma read as a point and the currency upper-cased", () => {
    expect(tariffChange(7, { price: "0,3125", standing: "12.50", currency: "sek" })).toEqual({
      body: { facility: 7, price_per_kwh: "0.3125", standing_charge_per_month: "12.50", currency: "SEK" },
    });
  });

  it.each([
    [{ price: "-0.1", standing: "1", currency: "EUR" }, "price"],
    [{ price: "1001", standing: "1", currency: "EUR" }, "price"],
    [{ price: "0.1234567", standing: "1", currency: "EUR" }, "price"],
    [{ price: "abc", standing: "1", currency: "EUR" }, "price"],
    [{ price: "0.3", standing: "-5", currency: "EUR" }, "standing"],
    [{ price: "0.3", standing: "1.005", currency: "EUR" }, "standing"],
    [{ price: "0.3", standing: "1", currency: "EU" }, "currency"],
  ])("refuses %j before sending it (%s)", (form, field) => {
    const change = tariffChange(1, form);
    expect("error" in change && change.field).toBe(field);
  });

  it("writes a price per kWh with up to four decimals and a day in the chosen language", () => {
    setLang("de", false);
    expect(perKwh("0.3125", "EUR")).toBe(new Intl.NumberFormat("de-DE", { style: "currency", currency: "EUR", maximumFractionDigits: 4 }).format(0.3125));
    expect(perKwh("0.3125", "EUR")).toMatch(/^0,3125\s€$/);
    expect(day("2026-12-02")).toBe("02.12.2026");
    setLang("en", false);
    expect(perKwh("2.5", "SEK")).toMatch(/2\.50/);
    expect(day("2026-12-02")).toBe("2 Dec 2026");
  });
});
