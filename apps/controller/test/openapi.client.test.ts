import { execFile } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import openapiTS, { astToString } from "openapi-typescript";
import { afterAll, describe, expect, test } from "vitest";
import { ADMIN, JOIN, makeHarness, testEngine } from "./fixture";

/**
 * /openapi.json comes from the routes' zod schemas, the same on both engines: the client is
 * compiled against it (tsc, 15-20 s a time) on SQLite only; its calls run on both.
 */
const compiles = testEngine === "sqlite";

const run = promisify(execFile);
const here = import.meta.dirname;
const controllerRoot = resolve(here, "..");
const scratch = mkdtempSync(join(tmpdir(), "deploybot-typed-client-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

type ExerciseApi = (fetch: (r: Request) => Promise<Response>, tokens: { admin: string; join: string }) => Promise<Record<string, unknown> & { jobIds: string[]; deploymentIds: string[] }>;
type Doc = { components: { schemas: Record<string, { properties: Record<string, unknown>; required: string[] }> } };

/**
 * Generates `paths` from `doc` next to a copy of calls.ts and runs tsc on both; returns tsc's
 * complaints ("" when it compiles).
 */
async function typeCheckCalls(doc: object, name: string): Promise<string> {
  const dir = join(scratch, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "api.gen.d.ts"), astToString(await openapiTS(doc as Parameters<typeof openapiTS>[0])));
  copyFileSync(join(here, "typedClient/calls.ts"), join(dir, "calls.ts"));
  const tsconfig = {
    extends: resolve(controllerRoot, "../../tsconfig.base.json"),
    compilerOptions: {
      noEmit: true,
      types: [],
      typeRoots: [resolve(controllerRoot, "node_modules/@types")],
      // resolve the client library from this package, though the files sit in a temp dir
      paths: { "openapi-fetch": [resolve(controllerRoot, "node_modules/openapi-fetch")] },
    },
    files: ["calls.ts", "api.gen.d.ts"],
  };
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(tsconfig));
  const tsc = resolve(controllerRoot, "../../node_modules/.bin/tsc");
  return run(tsc, ["-p", join(dir, "tsconfig.json")], { cwd: dir }).then(
    () => "",
    (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ""}${err.stderr ?? ""}` || "tsc failed",
  );
}

describe("a client generated from /openapi.json", () => {
  test("type-checks calls against the live document, and they match real answers", { timeout: 120_000 }, async () => {
    const h = await makeHarness();
    const doc = (await (await h.call("GET", "/openapi.json")).json()) as Doc;
    if (compiles) expect(await typeCheckCalls(doc, "live")).toBe("");

    // imported by path: calls.ts is compiled only against the generated types, never by the repo's tsc
    const callsFile = join(here, "typedClient/calls.ts");
    const { exerciseApi } = (await import(callsFile)) as { exerciseApi: ExerciseApi };
    const seen = await exerciseApi((request) => Promise.resolve(h.app.request(request)), { admin: ADMIN, join: JOIN });
    expect(seen).toMatchObject({
      healthy: true,
      tokenScope: "deploy",
      submittedStatus: "pending",
      claimedKind: "deploy",
      logOffset: 1,
      finishedStatus: "succeeded",
      logLines: ["hello"],
      nextCursor: null,
      containerStates: ["running"],
      appNames: ["web", "api"],
      webPorts: ["8080:80"],
      webCurrentRelease: null,
      deploymentStatus: "deploying",
      secretKey: "DATABASE_URL",
      deletedStatus: 204,
      buildErrorCode: "no_registry",
    });
    expect(seen.finishedAt).toEqual(expect.any(String));
    expect(seen.jobIds.length).toBe(1);
    expect(seen.deploymentIds.length).toBe(1);
  });

  test.skipIf(!compiles)("fails to compile when the document drifts from what the calls read", { timeout: 120_000 }, async () => {
    const doc = (await (await (await makeHarness()).call("GET", "/openapi.json")).json()) as Doc;
    const job = doc.components.schemas.Job!;
    // a renamed field, as if a response schema changed under the client
    job.properties.state = job.properties.status;
    delete job.properties.status;
    job.required = job.required.map((r) => (r === "status" ? "state" : r));
    const complaints = await typeCheckCalls(doc, "drifted");
    expect(complaints).toContain("calls.ts");
    expect(complaints).toMatch(/Property 'status' does not exist/);
  });
});
