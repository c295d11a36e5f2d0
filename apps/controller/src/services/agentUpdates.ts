import type { AgentUpdateOffer } from "@deploybot/protocol";
import type { AgentDistribution } from "./agentDist";
import type { Deps } from "./deps";

/** An agent told to update that has not come back on the new version by then frees its slot. */
const UPDATE_WINDOW_MS = 5 * 60_000;

const SEMVER = /^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?$/;

/** a < b by semver precedence (pre-releases before their release); null when either is no semver. */
export function olderVersion(a: string, b: string): boolean | null {
  const x = SEMVER.exec(a);
  const y = SEMVER.exec(b);
  if (!x || !y) return null;
  for (let i = 1; i <= 3; i++) if (Number(x[i]) !== Number(y[i])) return Number(x[i]) < Number(y[i]);
  if (x[4] === y[4]) return false;
  if (x[4] === undefined) return false;
  if (y[4] === undefined) return true;
  return x[4] < y[4];
}

interface AgentFacts {
  id: string;
  version: string;
  capabilities: Record<string, unknown>;
}

/**
 * Rolls a newer agent out across the fleet: an idle agent on an older version is offered the
 * distribution's agent in its heartbeat answer, at most DEPLOYBOT_AGENT_UPDATE_CONCURRENCY
 * agents at a time; one that opted out (capability autoUpdate: false) is never offered it.
 * The slots are this process's memory: a controller restart frees them, which costs at most
 * one more concurrent update.
 */
export class AgentUpdates {
  private readonly inFlight = new Map<string, { version: string; since: number }>();

  constructor(
    private readonly deps: Pick<Deps, "config" | "clock" | "logger">,
    private readonly dist: AgentDistribution,
  ) {}

  async offer(agent: AgentFacts, status: string, gotJob: boolean): Promise<AgentUpdateOffer | null> {
    const limit = this.deps.config.agentUpdateConcurrency;
    if (limit === 0 || agent.capabilities.autoUpdate === false) return null;
    const now = this.deps.clock();
    for (const [id, slot] of this.inFlight) if (now - slot.since > UPDATE_WINDOW_MS) this.inFlight.delete(id);
    const mine = this.inFlight.get(agent.id);
    if (mine && mine.version === agent.version) this.inFlight.delete(agent.id); // it came back updated
    if (status !== "idle" || gotJob) return null;
    // Not semver (a development agent): never offered anything, and no manifest is read for it.
    if (olderVersion(agent.version, "0.0.0") === null) return null;
    const manifest = await this.dist.manifest();
    const bundle = manifest.files["deploybot-agent.mjs"];
    if (!bundle || !olderVersion(agent.version, manifest.version)) return null;
    if (!this.inFlight.has(agent.id)) {
      if (this.inFlight.size >= limit) return null;
      this.inFlight.set(agent.id, { version: manifest.version, since: now });
      this.deps.logger.info({ agentId: agent.id, from: agent.version, to: manifest.version }, "agent update offered");
    }
    return { version: manifest.version, sha256: bundle.sha256, path: "/v1/agents/bundle" };
  }
}
