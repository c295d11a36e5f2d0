/**
 * An agent at the wire-protocol level (no Docker): registers, long-polls heartbeats reporting the
 * job it holds, and "runs" each job it is handed by reporting running, uploading numbered log
 * lines at their offsets and reporting succeeded. Every call is retried through outages (a
 * killed controller, a proxy without a backend for a moment) the way the real agent retries:
 * a log upload at a known offset and a repeated final status are idempotent; a 409 on a job
 * means the job is no longer ours and is dropped. What it was handed is recorded for the test.
 */
export interface Handed {
  agent: string;
  jobId: string;
  leaseId: string;
  /** the job ran to its succeeded report (false: the lease was taken away on the way) */
  finished: boolean;
}

// biome-ignore lint/suspicious/noExplicitAny: answers are read loosely and checked by the test's assertions
type Answer = { status: number; body: any };

export class ProtocolAgent {
  id = "";
  private token = "";
  private held: { id: string; leaseId: string } | null = null;
  stopped = false;

  constructor(
    private readonly url: string,
    readonly hostname: string,
    private readonly opts: { joinToken: string; labels?: string[]; linesPerJob: number; workMs?: number; handed: Handed[] },
  ) {}

  /** One HTTP call, retried on network errors and 5xx until it gets an answer (2 minutes at most). */
  private async call(method: string, path: string, body: unknown, token = this.token): Promise<Answer> {
    const deadline = Date.now() + 120_000;
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await fetch(this.url + path, {
          method,
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(60_000),
        });
        const text = await res.text();
        if (res.status < 500) return { status: res.status, body: text ? JSON.parse(text) : null };
      } catch {
        // connection refused or reset, a timeout: the next attempt may reach another controller
      }
      if (Date.now() > deadline) throw new Error(`${this.hostname}: ${method} ${path} got no answer for 2 minutes`);
      await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** attempt)));
    }
  }

  async register(): Promise<void> {
    const r = await this.call(
      "POST",
      "/v1/agents/register",
      { hostname: this.hostname, labels: this.opts.labels ?? [], version: "protocol-test", capabilities: { volumes: true }, heldJobIds: [] },
      this.opts.joinToken,
    );
    if (r.status !== 200 && r.status !== 201) throw new Error(`${this.hostname}: register answered ${r.status} ${JSON.stringify(r.body)}`);
    this.id = r.body.agent.id;
    this.token = r.body.token;
  }

  /** Heartbeats (long-poll) and runs what it is handed until stop(). */
  async run(): Promise<void> {
    while (!this.stopped) {
      const r = await this.call("POST", `/v1/agents/${this.id}/heartbeat?wait=2`, {
        status: this.held ? "busy" : "idle",
        heldJobIds: this.held ? [this.held.id] : [],
        containers: [],
      });
      if (r.status !== 200) throw new Error(`${this.hostname}: heartbeat answered ${r.status} ${JSON.stringify(r.body)}`);
      const job = r.body.job as { id: string; leaseId: string; logOffset: number } | null;
      if (!job) continue;
      this.held = { id: job.id, leaseId: job.leaseId };
      const handed: Handed = { agent: this.hostname, jobId: job.id, leaseId: job.leaseId, finished: false };
      this.opts.handed.push(handed);
      handed.finished = await this.runJob(job.id, job.leaseId, job.logOffset);
      this.held = null;
    }
  }

  private async runJob(jobId: string, leaseId: string, logOffset: number): Promise<boolean> {
    const running = await this.call("POST", `/v1/jobs/${jobId}/status`, { leaseId, status: "running" });
    if (running.status === 409) return false;
    const lines = Array.from({ length: this.opts.linesPerJob }, (_, i) => ({ ts: new Date().toISOString(), stream: "stdout", line: `${jobId} line ${i}` }));
    let offset = logOffset;
    // two uploads per job, as a job's output arrives over time
    for (const upTo of [Math.ceil(lines.length / 2), lines.length]) {
      if (offset > 0) await new Promise((r) => setTimeout(r, this.opts.workMs ?? 0));
      while (offset < upTo) {
        const r = await this.call("POST", `/v1/jobs/${jobId}/logs`, { leaseId, offset, entries: lines.slice(offset, upTo) });
        if (r.status === 200) offset = r.body.offset;
        else if (r.status === 409 && r.body?.error?.code === "offset_mismatch") offset = r.body.error.details.offset;
        else if (r.status === 409) return false;
        else throw new Error(`${this.hostname}: log upload answered ${r.status} ${JSON.stringify(r.body)}`);
      }
    }
    const done = await this.call("POST", `/v1/jobs/${jobId}/status`, { leaseId, status: "succeeded", logLines: lines.length });
    if (done.status === 409) return false;
    if (done.status !== 200) throw new Error(`${this.hostname}: final status answered ${done.status} ${JSON.stringify(done.body)}`);
    return true;
  }
}
