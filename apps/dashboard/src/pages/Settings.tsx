import type { TokenScope } from "@deploybot/protocol";
import { useState } from "preact/hooks";
import { Badge, Empty, Failure, GridTable, Loading, Page, Time } from "../components/ui";
import { type ApiFailure, api, get } from "../lib/api";
import { useResource } from "../lib/live";
import { useCan, useSession } from "../lib/session";
import type { ApiTokenRow, App, SecretName } from "../lib/types";

function Tokens() {
  const me = useSession();
  const { data, error, reload } = useResource(() => get<{ tokens: ApiTokenRow[] }>("/v1/tokens").then((r) => r.tokens), []);
  const [name, setName] = useState("");
  const [scope, setScope] = useState<TokenScope>("read");
  const [limitTo, setLimitTo] = useState("");
  const [made, setMade] = useState<{ name: string; token: string } | null>(null);
  const [failure, setFailure] = useState<ApiFailure | undefined>();

  const create = async (e: Event) => {
    e.preventDefault();
    setFailure(undefined);
    try {
      const apps = limitTo
        .split(/[\s,]+/)
        .map((a) => a.trim())
        .filter(Boolean);
      const t = await api<ApiTokenRow & { token: string }>("POST", "/v1/tokens", { name: name.trim(), scope, ...(apps.length ? { apps } : {}) });
      setMade({ name: t.name, token: t.token });
      setName("");
      setLimitTo("");
      reload();
    } catch (err) {
      setFailure(err as ApiFailure);
    }
  };
  const revoke = async (id: string) => {
    setFailure(undefined);
    try {
      await api("DELETE", `/v1/tokens/${encodeURIComponent(id)}`);
      reload();
    } catch (err) {
      setFailure(err as ApiFailure);
    }
  };

  return (
    <section aria-labelledby="tokens">
      <h2 id="tokens">API tokens</h2>
      <Failure error={error ?? failure} />
      {made ? (
        <div class="notice" role="status">
          <p>
            Token <b>{made.name}</b> — copy it now, it is not shown again:
          </p>
          <input class="wide mono" readOnly value={made.token} aria-label={`The new token ${made.name}`} onFocus={(e) => (e.target as HTMLInputElement).select()} />{" "}
          <button type="button" class="link" onClick={() => setMade(null)}>
            Done
          </button>
        </div>
      ) : null}
      {!data ? (
        <Loading what="tokens" />
      ) : data.length === 0 ? (
        <Empty>Only the bootstrap admin token (DEPLOYBOT_ADMIN_TOKEN) exists.</Empty>
      ) : (
        <GridTable>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Scope</th>
              <th scope="col">Apps</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">State</th>
            </tr>
          </thead>
          <tbody>
            {data.map((t) => (
              <tr key={t.id}>
                <th scope="row">{t.name}</th>
                <td>{t.scope}</td>
                <td>{t.apps ? t.apps.join(", ") : <span class="dim">all</span>}</td>
                <td>
                  <Time iso={t.createdAt} />
                </td>
                <td>
                  <Time iso={t.lastUsedAt} />
                </td>
                <td>
                  {t.revokedAt ? (
                    <Badge status="revoked" />
                  ) : t.id === me.tokenId ? (
                    <span class="dim">this session</span>
                  ) : (
                    <button type="button" class="secondary" onClick={() => revoke(t.id)}>
                      Revoke {t.name}
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </GridTable>
      )}
      <form class="filters" onSubmit={create} aria-label="Create a token">
        <label for="t-name">New token name</label>
        <input id="t-name" value={name} required maxLength={100} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
        <label for="t-scope">Scope</label>
        <select id="t-scope" value={scope} onChange={(e) => setScope((e.target as HTMLSelectElement).value as TokenScope)}>
          <option value="read">read</option>
          <option value="deploy">deploy</option>
          <option value="admin">admin</option>
        </select>
        {scope !== "admin" ? (
          <>
            <label for="t-apps">Only apps</label>
            <input id="t-apps" value={limitTo} placeholder="all (or: web, api)" onInput={(e) => setLimitTo((e.target as HTMLInputElement).value)} />
          </>
        ) : null}
        <button type="submit">Create token</button>
      </form>
    </section>
  );
}

function Secrets() {
  const apps = useResource(() => get<{ apps: App[] }>("/v1/apps").then((r) => r.apps.map((a) => a.name)), []);
  const [app, setApp] = useState("");
  const chosen = app || apps.data?.[0] || "";
  const secrets = useResource(() => (chosen ? get<{ secrets: SecretName[] }>(`/v1/apps/${encodeURIComponent(chosen)}/secrets`).then((r) => r.secrets) : Promise.resolve([])), [chosen]);
  const [key, setKey] = useState("");
  const [value, setValue] = useState("");
  const [failure, setFailure] = useState<ApiFailure | undefined>();

  const put = async (e: Event) => {
    e.preventDefault();
    setFailure(undefined);
    try {
      await api("PUT", `/v1/apps/${encodeURIComponent(chosen)}/secrets/${encodeURIComponent(key.trim())}`, { value });
      setKey("");
      setValue("");
      secrets.reload();
    } catch (err) {
      setFailure(err as ApiFailure);
    }
  };
  const remove = async (k: string) => {
    setFailure(undefined);
    try {
      await api("DELETE", `/v1/apps/${encodeURIComponent(chosen)}/secrets/${encodeURIComponent(k)}`);
      secrets.reload();
    } catch (err) {
      setFailure(err as ApiFailure);
    }
  };

  return (
    <section aria-labelledby="secrets">
      <h2 id="secrets">Secrets</h2>
      <p class="dim">Names only: a value is written here and never read back. Jobs receive values when they run.</p>
      <Failure error={apps.error ?? secrets.error ?? failure} />
      {!apps.data ? (
        <Loading what="apps" />
      ) : apps.data.length === 0 ? (
        <Empty>No apps.</Empty>
      ) : (
        <>
          <div class="filters">
            <label for="s-app">App</label>
            <select id="s-app" value={chosen} onChange={(e) => setApp((e.target as HTMLSelectElement).value)}>
              {apps.data.map((a) => (
                <option key={a}>{a}</option>
              ))}
            </select>
          </div>
          {!secrets.data ? null : secrets.data.length === 0 ? (
            <Empty>No secrets for {chosen}.</Empty>
          ) : (
            <ul class="plain">
              {secrets.data.map((s) => (
                <li key={s.key}>
                  <span class="mono">{s.key}</span> <span class="dim small">set <Time iso={s.updatedAt} /></span>{" "}
                  <button type="button" class="link" onClick={() => remove(s.key)}>
                    Remove {s.key}
                  </button>
                </li>
              ))}
            </ul>
          )}
          <form class="filters" onSubmit={put} aria-label="Set a secret">
            <label for="s-key">Name</label>
            <input id="s-key" value={key} required pattern="[A-Za-z_][A-Za-z0-9_]*" onInput={(e) => setKey((e.target as HTMLInputElement).value)} />
            <label for="s-value">Value</label>
            <input id="s-value" type="password" autocomplete="off" value={value} required onInput={(e) => setValue((e.target as HTMLInputElement).value)} />
            <button type="submit">Set secret</button>
          </form>
        </>
      )}
    </section>
  );
}

/** Admin only: API tokens and the names of each app's secrets. */
export function SettingsPage() {
  const isAdmin = useCan("admin");
  return (
    <Page title="Tokens & secrets">
      {isAdmin ? (
        <>
          <Tokens />
          <Secrets />
        </>
      ) : (
        <p>This page needs an admin token.</p>
      )}
    </Page>
  );
}
