import type { TokenSelf } from "@deploybot/protocol";
import { render } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import "./style.css";
import { type ApiFailure, api, session, setUnauthorizedHandler } from "./lib/api";
import { startLive, stopLive, useLiveMode } from "./lib/live";
import { interceptLinks, match, useLocation } from "./lib/router";
import { SessionContext, type SessionInfo } from "./lib/session";
import { AppPage } from "./pages/App";
import { AppsPage } from "./pages/Apps";
import { DeploymentPage } from "./pages/Deployment";
import { HostsPage } from "./pages/Hosts";
import { ImagesPage } from "./pages/Images";
import { JobPage } from "./pages/Job";
import { JobsPage } from "./pages/Jobs";
import { Login } from "./pages/Login";
import { Overview } from "./pages/Overview";
import { SettingsPage } from "./pages/Settings";
import { WebhooksPage } from "./pages/Webhooks";

const routes: Array<[string, (p: Record<string, string>) => preact.JSX.Element]> = [
  ["/", () => <Overview />],
  ["/hosts", () => <HostsPage />],
  ["/apps", () => <AppsPage />],
  ["/apps/:name", (p) => <AppPage name={p.name!} />],
  ["/deployments/:id", (p) => <DeploymentPage id={p.id!} />],
  ["/images", () => <ImagesPage />],
  ["/jobs", () => <JobsPage />],
  ["/jobs/:id", (p) => <JobPage id={p.id!} />],
  ["/webhooks", () => <WebhooksPage />],
  ["/settings", () => <SettingsPage />],
];

const nav: Array<[string, string]> = [
  ["/", "Overview"],
  ["/hosts", "Hosts"],
  ["/apps", "Apps"],
  ["/images", "Images"],
  ["/jobs", "Jobs"],
  ["/webhooks", "Webhooks"],
  ["/settings", "Tokens & secrets"],
];

function LiveIndicator() {
  const mode = useLiveMode();
  const text =
    mode.kind === "events" ? (mode.state === "live" ? "Live" : mode.state === "failed" ? "Live updates off" : "Reconnecting…") : mode.kind === "polling" ? `Refresh every ${mode.everySeconds} s` : "";
  return (
    <span class={`live ${mode.kind === "events" && mode.state === "live" ? "on" : ""}`} data-testid="live-mode">
      {text}
    </span>
  );
}

function Shell({ me, children }: { me: SessionInfo; children: preact.ComponentChildren }) {
  const { path } = useLocation();
  const active = (href: string) => (href === "/" ? path === "/" : path === href || path.startsWith(`${href}/`));
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/">
          deploybot
        </a>
        <nav aria-label="Main">
          {nav
            .filter(([href]) => href !== "/settings" || me.scope === "admin")
            .map(([href, label]) => (
              <a key={href} href={href} aria-current={active(href) ? "page" : undefined}>
                {label}
              </a>
            ))}
        </nav>
        <div class="who">
          <LiveIndicator />
          <span class="scope" data-testid="scope">
            {me.scope} token
          </span>
          <button type="button" class="link" onClick={me.signOut}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}

function NotFound() {
  return (
    <>
      <h1>Not found</h1>
      <p>
        There is no page at this address. <a href="/">Back to the overview</a>.
      </p>
    </>
  );
}

function Root() {
  const { path } = useLocation();
  // undefined: a token is stored but not checked yet; null: signed out
  const [me, setMe] = useState<TokenSelf | null | undefined>(session.token() ? (session.self() ?? undefined) : null);
  const [notice, setNotice] = useState<string | undefined>();

  const signOut = useCallback((reason?: string) => {
    session.clear();
    stopLive();
    setNotice(reason);
    setMe(null);
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => signOut("The controller no longer accepts this token. Sign in again."));
    const token = session.token();
    if (!token) return;
    // Checked again on every load (a token can be revoked, or its scope changed) while the page
    // already renders with what sign-in said: the API enforces the scope either way.
    api<TokenSelf>("GET", "/v1/tokens/self").then(
      (self) => {
        session.save(token, self);
        setMe((old) => (old && JSON.stringify(old) === JSON.stringify(self) ? old : self));
      },
      (err: ApiFailure) => {
        if (err.status === 401) signOut("The controller refused the saved token.");
        else if (!session.self()) signOut(err.message);
      },
    );
  }, [signOut]);

  useEffect(() => {
    if (me) startLive();
  }, [me]);

  if (me === undefined) return <p class="dim center">Signing in…</p>;
  if (me === null) {
    return (
      <Login
        notice={notice}
        onSignedIn={(self, token) => {
          session.save(token, self);
          setNotice(undefined);
          setMe(self);
        }}
      />
    );
  }
  const info: SessionInfo = { tokenId: me.id, scope: me.scope, apps: me.apps ?? null, signOut: () => signOut() };
  let page: preact.JSX.Element = <NotFound />;
  for (const [pattern, view] of routes) {
    const params = match(pattern, path);
    if (params) {
      page = view(params);
      break;
    }
  }
  return (
    <SessionContext.Provider value={info}>
      <Shell me={info}>{page}</Shell>
    </SessionContext.Provider>
  );
}

interceptLinks();
render(<Root />, document.getElementById("app")!);
