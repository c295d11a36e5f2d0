import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface Identity {
  agentId: string;
  token: string;
  hostname: string;
}

/** The job this agent holds, kept on disk so a crash or restart can pick it up again. */
export interface HeldJob {
  id: string;
  leaseId: string;
  kind: string;
  app: string;
  startedAt: number;
  /** a run's result_file, so a run re-attached after an agent restart still keeps its result */
  resultFile?: string;
  /** set once the job ended here, while the report to the controller may still be retrying */
  final?: { status: "succeeded" | "failed" | "cancelled"; result?: Record<string, unknown>; error?: string };
}

/** Small JSON files in the state dir, written atomically (tmp + rename) with mode 0600. */
export class AgentState {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  read<T>(name: string): T | null {
    try {
      return JSON.parse(readFileSync(join(this.dir, name), "utf8")) as T;
    } catch {
      return null;
    }
  }

  write(name: string, value: unknown): void {
    const file = join(this.dir, name);
    writeFileSync(`${file}.tmp`, JSON.stringify(value), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  loadIdentity = () => this.read<Identity>("identity.json");
  saveIdentity = (identity: Identity) => this.write("identity.json", identity);
  loadHeldJob = () => this.read<HeldJob>("job.json");
  saveHeldJob = (job: HeldJob) => this.write("job.json", job);
  clearHeldJob = () => rmSync(join(this.dir, "job.json"), { force: true });
}
