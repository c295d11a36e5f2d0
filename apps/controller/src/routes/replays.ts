import type { Job } from "@deploybot/protocol";
import type { Services } from "../services";

/**
 * Answers rebuilt from what a keyed request made (`IdempotencyHandle.made`), for a retry whose
 * first request committed its work and key but died before its answer was stored.
 */
export const replayJob =
  (s: Services, answer: (job: Job) => unknown) =>
  async ({ jobId, created }: { jobId: string; created: boolean }) => ({ status: created ? 201 : 200, body: answer(await s.jobs.get(jobId)) });

export const replayJobs = (s: Services) => async ({ jobIds }: { jobIds: string[] }) => ({
  status: 201,
  body: { jobs: await Promise.all(jobIds.map((id) => s.jobs.get(id))) },
});

export const replayDeployment = (s: Services) => async ({ deploymentId }: { deploymentId: string }) => ({
  status: 201,
  body: { deployment: await s.deployments.get(deploymentId) },
});
