// Sign-in with authorization code + PKCE against the platform's provider at /o/, and the tokens.
//
// The portal session is never used for data: the app calls the API with its bearer token only. A user
// signed in to the portal passes /o/authorize/ without a form (the app is a platform client the
// provider trusts), which is the one-click single sign-on; signing in here signs in the portal too.
import { challengeFor, randomString } from "./pkce";

export const SCOPES = "openid profile email fleet:read fleet:write readings:read billing:read billing:write";
const TOKENS = "eb:tokens";
const PENDING = "eb:pending";

export interface Tokens {
  access: string;
  refresh: string | null;
  expiresAt: number; // ms since 1970
}

export function clientId(): string {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="energybox-client-id"]');
  return meta?.content && !meta.content.startsWith("%") ? meta.content : "energybox-app";
}

export function redirectUri(): string {
  return `${location.origin}/app/`;
}

export function tokens(): Tokens | null {
  const raw = localStorage.getItem(TOKENS);
  if (!raw) return null;
  try {
    return JSON.parse(raw) as Tokens;
  } catch {
    return null;
  }
}

function keep(answer: { access_token: string; refresh_token?: string; expires_in: number }): Tokens {
  const kept: Tokens = {
    access: answer.access_token,
    refresh: answer.refresh_token ?? null,
    expiresAt: Date.now() + answer.expires_in * 1000,
  };
  localStorage.setItem(TOKENS, JSON.stringify(kept));
  return kept;
}

export function forgetTokens(): void {
  localStorage.removeItem(TOKENS);
}

/** Go to the provider; `place` (the screen the user was on) comes back after sign-in. */
export async function signIn(place: string): Promise<void> {
  const verifier = randomString(48);
  const state = randomString(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, place }));
  const query = new URLSearchParams({
    response_type: "code",
    client_id: clientId(),
    redirect_uri: redirectUri(),
    scope: SCOPES,
    state,
    code_challenge: await challengeFor(verifier),
    code_challenge_method: "S256",
  });
  location.assign(`/o/authorize/?${query}`);
}

async function tokenRequest(body: Record<string, string>): Promise<Tokens> {
  const response = await fetch("/o/token/", {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: clientId(), ...body }),
    credentials: "omit",
  });
  if (!response.ok) throw new Error(`token endpoint answered ${response.status}`);
  return keep(await response.json());
}

/** After the provider's redirect: exchange the code; returns the place to go back to, or null. */
export async function completeSignIn(url: URL): Promise<string | null> {
  const code = url.searchParams.get("code");
  const state = url.searchParams.get("state");
  if (!code && !url.searchParams.get("error")) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? "null") as
    | { verifier: string; state: string; place: string }
    | null;
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", `/app/${pending?.place ?? ""}`);
  if (!code || !pending || pending.state !== state) return pending?.place ?? "";
  await tokenRequest({
    grant_type: "authorization_code",
    code,
    redirect_uri: redirectUri(),
    code_verifier: pending.verifier,
  });
  return pending.place;
}

/** A new access token from the refresh token; null when the refresh token is gone or refused. */
export async function refresh(): Promise<Tokens | null> {
  const current = tokens();
  if (!current?.refresh) return null;
  try {
    return await tokenRequest({ grant_type: "refresh_token", refresh_token: current.refresh });
  } catch {
    forgetTokens();
    return null;
  }
}

export async function signOut(): Promise<void> {
  const current = tokens();
  forgetTokens();
  if (current) {
    await fetch("/o/revoke_token/", {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ client_id: clientId(), token: current.access }),
      credentials: "omit",
    }).catch(() => undefined);
  }
}
