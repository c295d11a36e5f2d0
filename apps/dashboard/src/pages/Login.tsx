import type { TokenSelf } from "@deploybot/protocol";
import { useState } from "preact/hooks";
import { ApiFailure, api } from "../lib/api";

/** Sign in with an API token; it is checked against the controller before it is kept. */
export function Login({ notice, onSignedIn }: { notice?: string; onSignedIn: (self: TokenSelf, token: string) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<string | undefined>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const value = token.trim();
    if (!value) return setError("Enter an API token.");
    setBusy(true);
    setError(undefined);
    try {
      onSignedIn(await api<TokenSelf>("GET", "/v1/tokens/self", undefined, value), value);
    } catch (err) {
      const f = err as ApiFailure;
      setError(f instanceof ApiFailure && f.status === 401 ? "The controller refused this token: it is unknown or revoked." : f.message);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" class="login">
      <h1>deploybot</h1>
      <p>Sign in with an API token: the bootstrap admin token, or one made with <code>deploybot tokens create</code>.</p>
      {notice ? (
        <p class="notice" role="status">
          {notice}
        </p>
      ) : null}
      <form onSubmit={submit}>
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="current-password"
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          aria-invalid={error ? "true" : undefined}
          aria-describedby={error ? "token-error" : "token-help"}
        />
        <p id="token-help" class="dim small">
          Kept in this tab only (sessionStorage) and sent as a bearer token; closing the tab signs you out.
        </p>
        {error ? (
          <p id="token-error" class="error" role="alert">
            {error}
          </p>
        ) : null}
        <button type="submit" disabled={busy}>
          {busy ? "Checking…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
