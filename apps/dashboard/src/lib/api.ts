import type { TokenScope, TokenSelf } from "@deploybot/protocol";

/**
 * The API token lives in sessionStorage and travels in the Authorization header, the way the
 * CLI sends it. No cookie means no cross-site request can carry it (no CSRF surface), the
 * controller's auth stays one code path, and closing the tab forgets it. The price is that a
 * script running in the page could read it: the controller serves the page with a CSP that
 * allows only its own scripts, and nothing here renders HTML from data.
 */
const TOKEN_KEY = "deploybot.token";
const SELF_KEY = "deploybot.self";

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  /** what the controller said of the token at sign-in: a reload renders at once and checks again behind */
  self: (): TokenSelf | null => {
    try {
      return JSON.parse(sessionStorage.getItem(SELF_KEY) ?? "null") as TokenSelf | null;
    } catch {
      return null;
    }
  },
  save: (token: string, self: TokenSelf) => {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(SELF_KEY, JSON.stringify(self));
  },
  clear: () => {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(SELF_KEY);
  },
};

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the controller refuses the stored token (revoked, or the controller's admin token changed). */
let onUnauthorized: () => void = () => {};
export const setUnauthorizedHandler = (fn: () => void) => {
  onUnauthorized = fn;
};

export const authHeaders = (token = session.token()): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

export async function api<T>(method: string, path: string, body?: unknown, token?: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: { ...authHeaders(token ?? session.token()), ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiFailure(0, "unreachable", "the controller did not answer");
  }
  if (res.status === 204) return undefined as T;
  const data = (await res.json().catch(() => null)) as { error?: { code: string; message: string } } | null;
  if (!res.ok) {
    const err = new ApiFailure(res.status, data?.error?.code ?? "error", data?.error?.message ?? `HTTP ${res.status}`);
    if (res.status === 401 && token === undefined) onUnauthorized();
    throw err;
  }
  return data as T;
}

export const get = <T>(path: string) => api<T>("GET", path);

const rank: Record<TokenScope, number> = { metrics: 0, read: 1, deploy: 2, admin: 3 };
/** What the UI shows; the API checks the scope again on every call. */
export const can = (have: TokenScope | undefined, need: TokenScope) => have !== undefined && rank[have] >= rank[need];

export const qs = (params: Record<string, string | number | undefined | null>) => {
  const entries = Object.entries(params).filter((e): e is [string, string | number] => e[1] !== undefined && e[1] !== null && e[1] !== "");
  return entries.length ? `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)])).toString()}` : "";
};
