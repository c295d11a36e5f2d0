import type { NewJob } from "../../src/services/jobStore";

let counter = 0;
/** A job row as the services queue it; ids sort by creation like the ULIDs the services use. */
export function newJob(target: { host?: string; labels?: string[] }, overrides: Partial<NewJob> = {}): NewJob {
  counter += 1;
  const id = `job_${Date.now().toString(36)}_${String(counter).padStart(6, "0")}_${Math.random().toString(36).slice(2, 6)}`;
  return {
    id,
    kind: "build",
    app: "web",
    targetHost: target.host ?? null,
    targetLabels: target.labels ?? null,
    spec: { kind: "build", app: "web", source: { type: "image", image: `img-${counter}` } },
    maxAttempts: 3,
    timeoutSeconds: 600,
    queueDeadline: Date.now() + 3_600_000,
    createdAt: Date.now(),
    ...overrides,
  };
}
