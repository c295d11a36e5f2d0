import type { AgentUpdateOffer } from "@deploybot/protocol";
import { and, eq, or } from "drizzle-orm";
import { agents, agentUpdateSlots } from "../db/schema";
import type { AgentDistribution, AgentManifest } from "./agentDist";
import type { Deps } from "./deps";

/** An agent told to update that has not come back on the new version by then frees its slot. */
const UPDATE_WINDOW_MS = 5 * 60_000;

/**
 * How long a manifest read is used for the offers that follow. Every idle heartbeat of a semver
 * agent asks for it; DEPLOYBOT_AGENT_DIST's manifest.json read and parsed per heartbeat cost
 * 8.5-10.4 µs in process (50,000 calls, 3 rounds), against ~160 CPU µs per idle heartbeat over
 * HTTP (pnpm bench). A distribution replaced on disk is offered at most this much later.
 */
const MANIFEST_KEEP_MS = 2_000;

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
 * The slots are rows (agent_update_slots), so with several controllers on one database the limit
 * holds for all of them together, not per controller; an agent back on the offered version, or
 * not back within the window, frees its slot.
 */
export class AgentUpdates {
  private kept: { manifest: AgentManifest; until: number } | null = null;
  /** when an unreadable distribution was last logged */
  private warnedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly deps: Pick<Deps, "config" | "clock" | "logger" | "db">,
    private readonly dist: AgentDistribution,
  ) {}

  async offer(agent: AgentFacts, status: string, gotJob: boolean): Promise<AgentUpdateOffer | null> {
    const limit = this.deps.config.agentUpdateConcurrency;
    if (limit === 0 || agent.capabilities.autoUpdate === false) return null;
    if (status !== "idle" || gotJob) return null;
    // Not semver (a development agent): never offered anything, and no manifest is read for it.
    if (olderVersion(agent.version, "0.0.0") === null) return null;
    let manifest: AgentManifest;
    try {
      manifest = await this.manifest();
    } catch (err) {
      // An unreadable distribution costs the offer, never the heartbeat: answering 503 here failed
      // every idle heartbeat of every semver agent, so a broken DEPLOYBOT_AGENT_DIST took the
      // whole fleet offline. Said in the log, at most once a minute.
      const now = this.deps.clock();
      if (now - this.warnedAt >= 60_000) {
        this.warnedAt = now;
        this.deps.logger.warn({ err }, "agent updates: the agent distribution cannot be read; nothing is offered until it can");
      }
      return null;
    }
    const bundle = manifest.files["deploybot-agent.mjs"];
    if (!bundle || !olderVersion(agent.version, manifest.version)) return null;
    if (!(await this.takeSlot(agent, manifest.version, limit))) return null;
    return { version: manifest.version, sha256: bundle.sha256, path: "/v1/agents/bundle" };
  }

  /** The distribution's manifest, read again once MANIFEST_KEEP_MS passed; a failed read is not kept (the next heartbeat reads again). */
  private async manifest(): Promise<AgentManifest> {
    const now = this.deps.clock();
    if (this.kept && now < this.kept.until) return this.kept.manifest;
    const manifest = await this.dist.manifest();
    this.kept = { manifest, until: now + MANIFEST_KEEP_MS };
    return manifest;
  }

  /**
   * Slots held and slots to free: those whose agent is back on the offered version (or newer),
   * is gone, or was not back within the window. Freed when a slot is wanted, so an up-to-date
   * agent's heartbeat writes nothing.
   */
  private async slots(now: number) {
    const { db } = this.deps;
    const rows = await db
      .select({ slot: agentUpdateSlots.slot, agentId: agentUpdateSlots.agentId, version: agentUpdateSlots.version, offeredAt: agentUpdateSlots.offeredAt, running: agents.version })
      .from(agentUpdateSlots)
      .leftJoin(agents, eq(agents.id, agentUpdateSlots.agentId));
    const done = (s: (typeof rows)[number]) => s.running === null || olderVersion(s.running, s.version) === false || s.offeredAt < now - UPDATE_WINDOW_MS;
    return { held: rows.filter((s) => !done(s)), free: rows.filter(done) };
  }

  /** True when the agent holds a slot for `version` (already, or taken now). */
  private async takeSlot(agent: AgentFacts, version: string, limit: number): Promise<boolean> {
    const { db, clock, logger } = this.deps;
    // read first: while the rollout is full, the agents waiting for a slot open no transaction
    const seen = await this.slots(clock());
    const held = seen.held.find((s) => s.agentId === agent.id);
    if (held?.version === version) return true;
    if (!held && seen.held.length >= limit) return false;
    return db.write(async () => {
      const now = clock();
      const { held, free } = await this.slots(now);
      // each row as it was read: by number alone, this could remove a slot another controller has
      // just freed and taken again (PostgreSQL: its commit lands between our read and our delete)
      if (free.length > 0) {
        await db
          .delete(agentUpdateSlots)
          .where(or(...free.map((s) => and(eq(agentUpdateSlots.slot, s.slot), eq(agentUpdateSlots.agentId, s.agentId), eq(agentUpdateSlots.offeredAt, s.offeredAt)))));
      }
      const mine = held.find((s) => s.agentId === agent.id);
      if (mine?.version === version) return true;
      if (mine) await db.delete(agentUpdateSlots).where(eq(agentUpdateSlots.agentId, agent.id)); // offered an older version before
      const taken = new Set(held.filter((s) => s !== mine).map((s) => s.slot));
      for (let slot = 0; slot < limit; slot++) {
        if (taken.has(slot)) continue;
        // another controller may take this number at the same moment: the key lets one insert
        // through (on PostgreSQL the other waits for its commit, then conflicts) and the loser
        // tries the next free number
        const [row] = await db
          .insert(agentUpdateSlots)
          .values({ slot, agentId: agent.id, version, offeredAt: now })
          .onConflictDoNothing()
          .returning({ slot: agentUpdateSlots.slot });
        if (row) {
          logger.info({ agentId: agent.id, from: agent.version, to: version, slot }, "agent update offered");
          return true;
        }
      }
      return false;
    });
  }
}
