import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";

/** One built file of the dashboard, held in memory with its gzip form (the whole build is ~75 KB). */
interface Asset {
  body: Uint8Array;
  gzip: Uint8Array | null;
  type: string;
  /** Vite names assets by content hash: they never change under the same name */
  immutable: boolean;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/**
 * Same origin only, no inline script or style: the API token lives in sessionStorage, so
 * the page must never run a script that did not come from this controller.
 */
export const DASHBOARD_HEADERS: Record<string, string> = {
  "content-security-policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

function missingBuildPage(dir: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>deploybot: dashboard not built</title></head>
<body><main><h1>The dashboard has not been built</h1>
<p>The controller serves the dashboard from <code>${dir.replace(/[&<>"']/g, "")}</code>, which holds no <code>index.html</code>.</p>
<p>Build it once with <code>pnpm --filter @deploybot/dashboard build</code> (<code>bash scripts/dev.sh</code> does this for you), then reload.
The API at <code>/v1</code> and its description at <a href="/docs">/docs</a> work without it.</p></main></body></html>`;
}

export type AssetAnswer = { status: 200 | 503; body: Uint8Array | string; headers: Record<string, string> };

/** The dashboard's built files, read once at first use; client routes fall back to index.html. */
export class DashboardAssets {
  private assets: Map<string, Asset> | null = null;

  constructor(private readonly dir: string) {}

  private load(): Map<string, Asset> {
    const map = new Map<string, Asset>();
    if (!existsSync(join(this.dir, "index.html"))) return map;
    const walk = (d: string) => {
      for (const name of readdirSync(d)) {
        const full = join(d, name);
        if (statSync(full).isDirectory()) walk(full);
        else {
          const body = readFileSync(full);
          const type = TYPES[extname(name)] ?? "application/octet-stream";
          const compressible = /^(text\/|application\/json|image\/svg)/.test(type) && body.length > 512;
          const path = `/${relative(this.dir, full).split(sep).join("/")}`;
          map.set(path, { body, gzip: compressible ? gzipSync(body, { level: 9 }) : null, type, immutable: path.startsWith("/assets/") });
        }
      }
    };
    walk(this.dir);
    return map;
  }

  /**
   * The answer for a GET of `path` outside the API, or null when the path belongs to the API.
   * A built file is served as is; any other path is a client route and gets index.html.
   */
  answer(path: string, acceptsGzip: boolean): AssetAnswer | null {
    if (path === "/v1" || path.startsWith("/v1/")) return null;
    // A missing build is looked for again on every request, so building while the controller runs is enough.
    if (!this.assets || this.assets.size === 0) this.assets = this.load();
    const index = this.assets.get("/index.html");
    if (!index) {
      return { status: 503, body: missingBuildPage(this.dir), headers: { "content-type": TYPES[".html"]!, "cache-control": "no-store", ...DASHBOARD_HEADERS } };
    }
    const file = this.assets.get(path);
    // a missing hashed asset is a 404, not the index page (a stale tab would run HTML as JS)
    if (!file && path.startsWith("/assets/")) return null;
    const asset = file ?? index;
    const headers: Record<string, string> = {
      "content-type": asset.type,
      "cache-control": asset.immutable ? "public, max-age=31536000, immutable" : "no-cache",
      vary: "accept-encoding",
      ...DASHBOARD_HEADERS,
    };
    if (acceptsGzip && asset.gzip) {
      headers["content-encoding"] = "gzip";
      return { status: 200, body: asset.gzip, headers };
    }
    return { status: 200, body: asset.body, headers };
  }
}
