import { type DesiredApp, type DesiredState, desiredApp } from "@deploybot/protocol";
import type { AgentState } from "../state";

interface Stored {
  /** the controller's version of this host's state; 0 until one was received */
  version: number;
  apps: DesiredApp[];
  /** app -> job id: entries this agent changed itself (a job succeeded here) that the controller has not echoed yet */
  local: Record<string, string>;
}

const FILE = "desired.json";

/**
 * The host's desired state, cached in the state dir (mode 0600: it carries secret values), so
 * reconcile works while the controller is away and after a reboot.
 *
 * Every change of a host's state comes from a job that ran on this host, so the agent applies
 * it here the moment the job succeeds. A heartbeat answer may still carry the controller's
 * older view of that app (its version moved for another app meanwhile); the local entry wins
 * until the controller's entry names the same job.
 */
export class DesiredStore {
  private data: Stored;

  constructor(private readonly state: AgentState) {
    const raw = state.read<Stored>(FILE);
    const apps = (raw?.apps ?? []).flatMap((a) => {
      const parsed = desiredApp.safeParse(a);
      return parsed.success ? [parsed.data] : [];
    });
    this.data = { version: raw?.version ?? 0, apps, local: raw?.local ?? {} };
  }

  get version(): number {
    return this.data.version;
  }

  /** False until the controller (or a job) has said anything: reconcile must not remove apps it was never told about. */
  get known(): boolean {
    return this.data.version > 0 || this.data.apps.length > 0;
  }

  get(app: string): DesiredApp | undefined {
    return this.data.apps.find((a) => a.app === app);
  }

  apps(): DesiredApp[] {
    return this.data.apps;
  }

  applyRemote(remote: DesiredState): void {
    const local = { ...this.data.local };
    const byApp = new Map(remote.apps.map((a) => [a.app, a]));
    for (const [app, jobId] of Object.entries(local)) {
      const theirs = byApp.get(app);
      const mine = this.get(app);
      if (theirs?.jobId === jobId || !mine) delete local[app];
      else byApp.set(app, mine);
    }
    this.data = { version: remote.version, apps: [...byApp.values()], local };
    this.save();
  }

  /** A job that changes what runs here succeeded: apply it now, keep it until the controller agrees. */
  setLocal(app: string, jobId: string, fields: Partial<Omit<DesiredApp, "app" | "jobId">>): DesiredApp {
    const previous = this.get(app);
    const entry = desiredApp.parse({ ...(previous ?? { app }), ...fields, app, jobId });
    this.data = {
      ...this.data,
      apps: [...this.data.apps.filter((a) => a.app !== app), entry],
      local: { ...this.data.local, [app]: jobId },
    };
    this.save();
    return entry;
  }

  private save() {
    this.state.write(FILE, this.data);
  }
}
