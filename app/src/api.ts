// The public API with the app's bearer token. A 401 tries one refresh; then the user must sign in again.
import { refresh, tokens } from "./auth";

export class SignedOut extends Error {}
export class Offline extends Error {}
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function apiGet<T>(path: string, query: Record<string, string | number> = {}): Promise<T> {
  const url = new URL(`/api/v1/${path}`, location.origin);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, String(value));
  let current = tokens();
  if (!current) throw new SignedOut();
  for (let attempt = 0; attempt < 2; attempt++) {
    let response: Response;
    try {
      response = await fetch(url, {
        headers: { Authorization: `Bearer ${current.access}`, Accept: "application/json" },
        credentials: "omit",
        cache: "no-store",
      });
    } catch {
      throw new Offline();
    }
    if (response.status === 401) {
      current = attempt === 0 ? await refresh() : null;
      if (!current) throw new SignedOut();
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, `${path}: ${response.status}`);
    return (await response.json()) as T;
  }
  throw new SignedOut();
}

/** A POST with a JSON body; a 4xx answer comes back as `ApiError` with the server's message. */
export function apiPost<T>(path: string, body: unknown): Promise<T> {
  return apiSend<T>("POST", path, body);
}

export async function apiSend<T>(method: "POST" | "PATCH" | "PUT", path: string, body: unknown): Promise<T> {
  const current = tokens();
  if (!current) throw new SignedOut();
  let response: Response;
  try {
    response = await fetch(new URL(`/api/v1/${path}`, location.origin), {
      method,
      headers: { Authorization: `Bearer ${current.access}`, "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
    });
  } catch {
    throw new Offline();
  }
  if (response.status === 401) throw new SignedOut();
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, answer?.error?.message ?? `${path}: ${response.status}`);
  return answer as T;
}

export interface Me {
  user: { id: number; username: string; name: string; email: string; email_verified: boolean; language: string };
  tenant: number;
  tenants: { id: number; name: string; role: string }[];
  facilities: { id: number; name: string; timezone: string }[];
}

export interface Channel {
  id: number;
  device: number;
  facility: number;
  name: string;
  quantity: string;
  unit: string;
  phase: string;
  load: number | null;
}

export interface Load {
  id: number;
  facility: number;
  name: string;
  kind: string;
}

export interface Device {
  id: number;
  serial: string;
  name: string;
  facility: number;
  status: string;
  last_seen: string | null;
}

export interface Latest {
  channel: number;
  t: string | null;
  value: number | null;
}

export interface Energy {
  points: { start: string; end: string; kwh: number | null }[];
  loads: { load: number; name: string; kind: string; kwh: (number | null)[]; total_kwh: number }[];
}

export interface Cost {
  currency: string;
  points: { start: string; end: string; cost: string | null }[];
}

export interface Bill {
  currency: string;
  gross: string;
  net: string;
  status: string;
  lines: { kind: string; label: string; amount: string }[];
  detail: { projected_gross: string | null };
}

interface Page<T> {
  results: T[];
  next: string | null;
}

export async function listAll<T>(path: string, query: Record<string, string | number>): Promise<T[]> {
  const page = await apiGet<Page<T>>(path, { ...query, page_size: 1000 });
  return page.results;
}
