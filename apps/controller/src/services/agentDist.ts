import { createReadStream, readFileSync, statSync } from "node:fs";
import { Readable } from "node:stream";
import { join } from "node:path";
import { ApiError } from "../lib/errors";

export interface AgentManifest {
  version: string;
  node: string;
  files: Record<string, { sha256: string; size: number }>;
}

/** The files a host may fetch; anything else is 404 (no path ever comes from the request). */
export const AGENT_DIST_FILES = ["manifest.json", "deploybot-agent.mjs", "deploybot-agent.service", "deploybot-proxy.service", "deploybot-proxy.path", "install-agent.sh"] as const;
export type AgentDistFile = (typeof AGENT_DIST_FILES)[number];

const CONTENT_TYPES: Record<AgentDistFile, string> = {
  "manifest.json": "application/json",
  "deploybot-agent.mjs": "text/javascript; charset=utf-8",
  "deploybot-agent.service": "text/plain; charset=utf-8",
  "deploybot-proxy.service": "text/plain; charset=utf-8",
  "deploybot-proxy.path": "text/plain; charset=utf-8",
  "install-agent.sh": "text/x-shellscript; charset=utf-8",
};

/**
 * The agent as the controller hands it out: one bundled file plus its unit and installer, each
 * with a sha256 in the manifest. From DEPLOYBOT_AGENT_DIST as built, or else the checkout's
 * own, rebuilt by esbuild when a source is newer (~1.5 s, once per change; builds are
 * single-flight, so a fleet asking at once causes one).
 */
export class AgentDistribution {
  private building: Promise<AgentManifest> | null = null;
  // Heartbeats ask for the manifest; the checkout's staleness walk (~100 stats) runs at most every 5 s.
  private cached: { manifest: AgentManifest; at: number } | null = null;

  constructor(private readonly dir: string | undefined) {}

  async manifest(): Promise<AgentManifest> {
    if (this.dir) {
      try {
        return JSON.parse(readFileSync(join(this.dir, "manifest.json"), "utf8")) as AgentManifest;
      } catch (err) {
        throw new ApiError(503, "agent_dist_unavailable", `DEPLOYBOT_AGENT_DIST has no readable manifest.json: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    }
    if (this.cached && Date.now() - this.cached.at < 5_000) return this.cached.manifest;
    this.building ??= import("../../../../scripts/build-agent.mjs")
      .then((b) => b.currentAgentDist())
      .then((manifest) => {
        this.cached = { manifest, at: Date.now() };
        return manifest;
      })
      .finally(() => {
        this.building = null;
      });
    return this.building;
  }

  /** A file of the distribution as a stream, with the headers a client checks it by. */
  async file(name: string): Promise<{ body: ReadableStream; headers: Record<string, string> }> {
    if (!(AGENT_DIST_FILES as readonly string[]).includes(name)) throw new ApiError(404, "not_found", `the agent distribution has no file '${name}'`);
    const manifest = await this.manifest();
    const path = join(this.dir ?? (await import("../../../../scripts/build-agent.mjs")).defaultAgentDist, name);
    const meta = manifest.files[name];
    const headers: Record<string, string> = { "content-type": CONTENT_TYPES[name as AgentDistFile], "x-deploybot-agent-version": manifest.version, "cache-control": "no-cache" };
    // the manifest's checksum, the file's real length: a client that checks finds a file that differs
    if (meta) Object.assign(headers, { "x-deploybot-sha256": meta.sha256, etag: `"${meta.sha256}"` });
    const size = statSync(path, { throwIfNoEntry: false })?.size;
    if (size === undefined) throw new ApiError(503, "agent_dist_unavailable", `the agent distribution lacks ${name}`);
    headers["content-length"] = String(size);
    return { body: Readable.toWeb(createReadStream(path)) as ReadableStream, headers };
  }
}
