// The last figures the app showed, kept per user so they can be shown offline with their age.
// Keyed by the user's id and cleared on sign-out: another user on the same browser never sees them.
const PREFIX = "eb:last:";

export interface Saved<T> {
  savedAt: number;
  value: T;
}

export function saveFigures<T>(userId: number, name: string, value: T, now = Date.now()): void {
  const key = `${PREFIX}${userId}`;
  const all = JSON.parse(localStorage.getItem(key) ?? "{}") as Record<string, Saved<unknown>>;
  all[name] = { savedAt: now, value };
  localStorage.setItem(key, JSON.stringify(all));
}

export function savedFigures<T>(userId: number, name: string): Saved<T> | null {
  const all = JSON.parse(localStorage.getItem(`${PREFIX}${userId}`) ?? "{}") as Record<string, Saved<T>>;
  return all[name] ?? null;
}

export function forgetFigures(): void {
  for (let i = localStorage.length - 1; i >= 0; i--) {
    const key = localStorage.key(i);
    if (key?.startsWith(PREFIX)) localStorage.removeItem(key);
  }
  localStorage.removeItem("eb:me");
}

export function saveMe(me: unknown): void {
  localStorage.setItem("eb:me", JSON.stringify(me));
}

export function savedMe<T>(): T | null {
  return JSON.parse(localStorage.getItem("eb:me") ?? "null") as T | null;
}
