// The household's own tariff: checking the form before it is sent to PUT /api/v1/me/tariff/.
import type { Key } from "./i18n";

export interface HouseholdTariff {
  facility: number;
  tariff: {
    contract: number;
    name: string;
    currency: string;
    valid_from: string;
    valid_to: string | null;
    price_per_kwh: string | null; // null: the price changes with the hour
    standing_charge_per_month: string;
  } | null;
}

export interface TariffChange {
  facility: number;
  price_per_kwh: string;
  standing_charge_per_month: string;
  currency: string;
}

// The server's bounds (consumer/services.py); it checks them again.
const MAX_PRICE = 1000;
const MAX_STANDING = 100_000;

function amount(text: string, max: number, places: number): string | null {
  const cleaned = text.trim().replace(",", ".");
  if (!/^\d+(\.\d+)?$/.test(cleaned)) return null;
  const value = Number(cleaned);
  if (!Number.isFinite(value) || value < 0 || value > max) return null;
  if ((cleaned.split(".")[1] ?? "").length > places) return null;
  return cleaned;
}

/** The PUT body for /me/tariff/, or the message key of the first field that is wrong. */
export function tariffChange(
  facility: number,
  form: { price: string; standing: string; currency: string },
): { body: TariffChange } | { error: Key; field: "price" | "standing" | "currency" } {
  const price = amount(form.price, MAX_PRICE, 6);
  if (price === null) return { error: "tariffBadPrice", field: "price" };
  const standing = amount(form.standing, MAX_STANDING, 2);
  if (standing === null) return { error: "tariffBadStanding", field: "standing" };
  const currency = form.currency.trim().toUpperCase();
  if (!/^[A-Z]{3}$/.test(currency)) return { error: "tariffBadCurrency", field: "currency" };
  return { body: { facility, price_per_kwh: price, standing_charge_per_month: standing, currency } };
}
