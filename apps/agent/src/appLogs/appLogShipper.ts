import { join } from "node:path";
import { PassThrough } from "node:stream";
import { type AppLogEntry, normaliseTs } from "@deploybot/protocol";
import type Dockerode from "dockerode";
import type { Logger } from "pino";
import { sleep } from "../backoff";
import type { ControllerClient } from "../controllerClient";
import { LABELS, listManagedInfo } from "../docker/managedContainers";
import type { Redactor } from "../redact";
import type { AgentState } from "../state";
import { AppLogSpool } from "./appLogSpool";

const CURSORS = "app-log-cursors.json";
const TICK_MS = 1000;

interface Cursors {
  /** container name -> timestamp (9-digit fraction) of the last line on disk */
  at: Record<string, string>;
  /** seconds: containers created before the agent first shipped logs start from now, not their whole history */
  since: number;
}


/** The engine's `since` form: "seconds.nanoseconds". */
const sinceArg = (ts: string) => `${Math.floor(Date.parse(`${ts.slice(0, 19)}Z`) / 1000)}.${ts.slice(20, 29)}`;

/**
 * Ships the output of this host's app containers to the controller continuously: one follower
 * per running container (`docker logs -f --timestamps --since <cursor>`), every line redacted
 * and spooled on disk, the cursor moved only once the line is on disk. After an agent restart a
 * follower resumes after its cursor, so no line is lost or read twice; a container that exited
 * while the agent was away is read up to its end once.
 */
export class AppLogShipper {
  private readonly spool: AppLogSpool;
  private cursors: Cursors;
  /** the newest timestamp read per container in this process (on disk or on its way there) */
  private readonly read = new Map<string, string>();
  private readonly following = new Map<string, AbortController>();
  private readonly drained = new Set<string>();
  private readonly stopped = new AbortController();
  private loop: Promise<void> | null = null;

  constructor(
    private readonly docker: Dockerode,
    client: ControllerClient,
    private readonly state: AgentState,
    private readonly redactor: Redactor,
    private readonly logger: Logger,
  ) {
    this.cursors = state.read<Cursors>(CURSORS) ?? { at: {}, since: Math.floor(Date.now() / 1000) };
    this.spool = new AppLogSpool(join(state.dir, "app-logs"), client, logger, (batch) => this.moveCursors(batch));
  }

  /** Nothing is written before this: an update's trial run constructs the daemon next to the running agent. */
  start(agentPath: () => string | null): void {
    if (!this.loop) {
      // lines on disk whose cursor write was cut by a crash still count as read
      this.moveCursors([...this.spool.spooled], false);
      this.saveCursors();
    }
    this.spool.start(agentPath);
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopped.abort();
    for (const f of this.following.values()) f.abort();
    await this.loop;
    await this.spool.stop();
  }

  private async run(): Promise<void> {
    while (!this.stopped.signal.aborted) {
      await this.tick().catch((err: Error) => this.logger.debug({ err: err.message }, "app log tick failed"));
      await sleep(TICK_MS, this.stopped.signal);
    }
  }

  private async tick(): Promise<void> {
    const containers = (await listManagedInfo(this.docker)).filter((c) => !c.Labels?.[LABELS.role] && c.Labels?.[LABELS.app]);
    for (const c of containers) {
      if (this.following.has(c.Id)) continue;
      if (c.State === "running") void this.follow(c, true);
      else if (!this.drained.has(c.Id)) void this.follow(c, false);
    }
    const names = new Set(containers.map(nameOf));
    let pruned = false;
    for (const name of Object.keys(this.cursors.at)) {
      if (names.has(name) || this.spool.spooled.some((e) => e.container === name)) continue;
      delete this.cursors.at[name];
      this.read.delete(name);
      pruned = true;
    }
    if (pruned) this.saveCursors();
  }

  /** Reads a container's lines after its cursor: until it stops (`live`), or what it has now. */
  private async follow(c: Dockerode.ContainerInfo, live: boolean): Promise<void> {
    const name = nameOf(c);
    const app = c.Labels[LABELS.app]!;
    const abort = new AbortController();
    this.following.set(c.Id, abort);
    try {
      const cursor = this.read.get(name) ?? this.cursors.at[name];
      const since = cursor ? sinceArg(cursor) : c.Created >= this.cursors.since ? undefined : String(Math.floor(Date.now() / 1000));
      const options = { stdout: true, stderr: true, timestamps: true, follow: live, ...(since ? { since } : {}), abortSignal: abort.signal };
      const raw = (await this.docker.getContainer(c.Id).logs(options as Dockerode.ContainerLogsOptions & { follow: true })) as NodeJS.ReadableStream | Buffer;
      const out = { stdout: lineSplitter((l) => this.take(app, name, "stdout", l)), stderr: lineSplitter((l) => this.take(app, name, "stderr", l)) };
      if (Buffer.isBuffer(raw)) {
        const demuxed = new PassThrough();
        this.docker.modem.demuxStream(demuxed, out.stdout.stream, out.stderr.stream);
        demuxed.end(raw);
        await new Promise((r) => setImmediate(r));
      } else {
        this.docker.modem.demuxStream(raw, out.stdout.stream, out.stderr.stream);
        await new Promise<void>((resolve) => {
          raw.on("end", resolve);
          raw.on("close", resolve);
          raw.on("error", () => resolve());
          abort.signal.addEventListener("abort", () => resolve(), { once: true });
        });
      }
      if (!abort.signal.aborted) {
        out.stdout.flush();
        out.stderr.flush();
        this.drained.add(c.Id);
      }
    } catch (err) {
      if (!abort.signal.aborted) this.logger.debug({ container: name, err: (err as Error).message }, "following container logs failed");
    } finally {
      this.following.delete(c.Id);
    }
  }

  /** One line as the engine sent it: "<RFC 3339 nano timestamp> <text>". */
  private take(app: string, container: string, stream: "stdout" | "stderr", raw: string) {
    const space = raw.indexOf(" ");
    if (space < 0) return;
    const ts = normaliseTs(raw.slice(0, space));
    const last = this.read.get(container) ?? this.cursors.at[container];
    if (last && ts <= last) return; // read before (a restart, or the engine's inclusive `since`)
    this.read.set(container, ts);
    const entry: AppLogEntry = { ts, app, container, stream, line: this.redactor.redact(raw.slice(space + 1)).slice(0, 65_536) };
    this.spool.append(entry);
  }

  private moveCursors(batch: AppLogEntry[], save = true) {
    for (const e of batch) {
      const at = this.cursors.at[e.container];
      if (!at || e.ts > at) this.cursors.at[e.container] = e.ts;
    }
    if (save && batch.length > 0) this.saveCursors();
  }

  private saveCursors() {
    this.state.write(CURSORS, this.cursors);
  }
}

const nameOf = (c: Dockerode.ContainerInfo) => c.Names?.[0]?.replace(/^\//, "") ?? c.Id.slice(0, 12);

function lineSplitter(onLine: (line: string) => void) {
  const stream = new PassThrough();
  let pending = "";
  stream.on("data", (chunk: Buffer) => {
    const lines = (pending + chunk.toString("utf8")).split("\n");
    pending = lines.pop() ?? "";
    for (const l of lines) onLine(l.replace(/\r$/, ""));
  });
  return {
    stream,
    flush: () => {
      if (pending !== "") onLine(pending);
      pending = "";
    },
  };
}
