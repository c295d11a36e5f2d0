import { domainProblem } from "@deploybot/protocol";
import type { AppRoute } from "./routeTable";

export interface ProxyFiles {
  config: string;
  adminSocket: string;
  masterSocket: string;
  pidFile: string;
  hostsMap: string;
  tlsMap: string;
  challengesMap: string;
  crtList: string;
  defaultCert: string;
}

export interface ConfigInput {
  files: ProxyFiles;
  bindAddress: string;
  httpPort: number;
  httpsPort: number;
  routes: AppRoute[];
  /** app -> certificate file (PEM: chain + key) for apps with tls auto|internal */
  certificates: Map<string, string>;
}

export interface RenderedConfig {
  config: string;
  hostsMap: string;
  tlsMap: string;
  crtList: string;
}

export const backendName = (app: string): string => `app_${app}`;
/** HAProxy server names: `c` + the first 12 hex digits of the container id. */
export const serverName = (containerId: string): string => `c${containerId.slice(0, 12)}`;

// Everything below is checked before it is written: the config is generated from validated data,
// never from strings that could carry a newline, a quote, a '#' or a '$' into HAProxy's parser.
const SAFE_PATH = /^\/[A-Za-z0-9_./-]+$/;
const SAFE_APP = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const SAFE_HTTP_PATH = /^\/[A-Za-z0-9._~%/?=&+-]*$/;

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`refusing to write the proxy config: ${what}`);
}

export function validateRoutes(input: ConfigInput): void {
  for (const p of Object.values(input.files)) check(SAFE_PATH.test(p), `unsafe path ${JSON.stringify(p)}`);
  check(IPV4.test(input.bindAddress) || input.bindAddress === "::", `bad bind address ${input.bindAddress}`);
  for (const port of [input.httpPort, input.httpsPort]) check(Number.isInteger(port) && port > 0 && port < 65536, `bad port ${port}`);
  for (const r of input.routes) {
    check(SAFE_APP.test(r.app), `bad app name ${JSON.stringify(r.app)}`);
    for (const d of r.domains) check(domainProblem(d) === null, `bad domain ${JSON.stringify(d)}`);
    check(SAFE_HTTP_PATH.test(r.healthPath), `bad health path ${JSON.stringify(r.healthPath)}`);
    check(Number.isInteger(r.responseTimeoutSeconds) && r.responseTimeoutSeconds > 0, "bad response timeout");
    for (const u of r.upstreams) {
      check(/^[0-9a-f]{12,64}$/.test(u.container), `bad container id ${JSON.stringify(u.container)}`);
      check(IPV4.test(u.ip), `bad upstream address ${JSON.stringify(u.ip)}`);
      check(Number.isInteger(u.port) && u.port > 0 && u.port < 65536, `bad upstream port ${u.port}`);
    }
  }
  for (const file of input.certificates.values()) check(SAFE_PATH.test(file), `unsafe certificate path ${JSON.stringify(file)}`);
}

/** Server line arguments shared by the config file and the runtime API's `add server`. */
export const serverArguments = (ip: string, port: number): string => `${ip}:${port} check inter 2s fall 3 rise 2`;

/**
 * The whole HAProxy config for the host's routes. Runtime changes (servers in and out during a
 * deploy) go through the runtime API; this file is rewritten after each one so that a restart of
 * HAProxy comes back with the current routes, and it is loaded (seamless reload) only when the
 * set of apps, domains or certificates changes.
 */
export function renderHaproxyConfig(input: ConfigInput): RenderedConfig {
  validateRoutes(input);
  const { files, routes } = input;
  const bind = input.bindAddress === "::" ? ":::" : `${input.bindAddress}:`;
  // Only hosts with a certificate in place redirect to https (an ACME order may still be pending).
  const tlsRoutes = routes.filter((r) => r.tls !== "off" && input.certificates.has(r.app));
  const httpsSuffix = input.httpsPort === 443 ? "" : `:${input.httpsPort}`;
  const routing = [
    "  http-request set-var(txn.host) req.hdr(host),lower,word(1,:)",
    `  http-request return status 404 content-type text/plain string "no route for this host\\n" if !{ var(txn.host),map(${files.hostsMap}) -m found }`,
    `  use_backend %[var(txn.host),map(${files.hostsMap})]`,
  ];
  const lines = [
    "# Written by the deploybot agent from its route table (routes.json). Edits are overwritten.",
    "global",
    `  stats socket ${files.adminSocket} mode 600 level admin expose-fd listeners`,
    // An old worker after a reload keeps its long connections (WebSockets, SSE) up to this long.
    "  hard-stop-after 15m",
    "  tune.ssl.default-dh-param 2048",
    "",
    "defaults",
    "  mode http",
    "  option forwardfor",
    // A connection that fails before any byte is retried on another server of the route.
    "  option redispatch 1",
    // Upstreams are containers on a local bridge: a connect takes well under 1 ms, but a SYN
    // dropped by a full accept queue costs the kernel's 1 s retransmission. Retrying the connect
    // after 250 ms (up to 20 times: the same ~5 s budget as one 5 s timeout) cuts that tail.
    "  retries 20",
    "  retry-on conn-failure",
    // After a reload the old worker answers the next request of an idle keep-alive connection
    // with `Connection: close` instead of closing it under the client (the retrying-client case).
    "  option idle-close-on-response",
    "  timeout connect 250ms",
    "  timeout client 60s",
    "  timeout server 60s",
    "  timeout http-request 15s",
    "  timeout http-keep-alive 15s",
    "  timeout tunnel 1h",
    "",
    "frontend http",
    `  bind ${bind}${input.httpPort}`,
    "  http-request set-var(txn.host) req.hdr(host),lower,word(1,:)",
    // ACME http-01: the key authorisation of a pending order, from a map the agent fills at run time.
    `  http-request return status 200 content-type text/plain lf-string "%[path,field(4,/),map(${files.challengesMap})]" if { path_beg /.well-known/acme-challenge/ } { path,field(4,/),map(${files.challengesMap}) -m found }`,
    `  http-request redirect location https://%[var(txn.host)]${httpsSuffix}%[capture.req.uri] code 308 if { var(txn.host),map(${files.tlsMap}) -m found } !{ path_beg /.well-known/acme-challenge/ }`,
    ...routing.slice(1),
    "",
    "frontend https",
    `  bind ${bind}${input.httpsPort} ssl crt ${files.defaultCert} crt-list ${files.crtList} alpn http/1.1`,
    "  http-request set-header X-Forwarded-Proto https",
    ...routing,
    "",
  ];
  for (const r of routes) {
    lines.push(
      `backend ${backendName(r.app)}`,
      "  balance roundrobin",
      `  timeout server ${r.responseTimeoutSeconds}s`,
      `  option httpchk GET ${r.healthPath}`,
      "  http-check expect rstatus ^2",
      ...r.upstreams.map((u) => `  server ${serverName(u.container)} ${serverArguments(u.ip, u.port)}`),
      "",
    );
  }
  return {
    config: `${lines.join("\n")}\n`,
    hostsMap: routes.flatMap((r) => r.domains.map((d) => `${d} ${backendName(r.app)}\n`)).join(""),
    tlsMap: tlsRoutes.flatMap((r) => r.domains.map((d) => `${d} 1\n`)).join(""),
    crtList: tlsRoutes.map((r) => `${input.certificates.get(r.app)}\n`).join(""),
  };
}
