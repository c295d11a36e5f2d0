import { relative } from "node:path";
import { defineConfig } from "vitest/config";
import { BaseSequencer, type TestSpecification } from "vitest/node";

/**
 * Seconds each of the slowest files took in a CI run (2 cores, files one at a time). CI runs in
 * a fresh clone, so vitest has no timings of its own there and would start files by size; with
 * two workers a file of two minutes started last makes the run two minutes longer. A stale
 * figure only changes the order, never what runs.
 */
const MEASURED_SECONDS: Record<string, number> = {
  "test/e2e/reconcile.test.ts": 133,
  "test/e2e/deploy.test.ts": 68,
  "test/e2e/notifications.test.ts": 48,
  "test/e2e/backupRestore.test.ts": 36,
  "apps/cli/test/cli2.test.ts": 35,
  "test/e2e/runs.test.ts": 34,
  "test/e2e/fleet.test.ts": 32,
  "apps/dashboard/test/dashboard.browser.test.ts": 31,
  "apps/agent/test/volumes.docker.test.ts": 29,
  "test/e2e/dockerdRestart.test.ts": 21,
  "apps/cli/test/cli.test.ts": 19,
  "apps/agent/test/proxy.docker.test.ts": 17,
  "test/install/install.test.ts": 17,
  "test/e2e/volumes.test.ts": 16,
  "apps/agent/test/drain.docker.test.ts": 16,
};

/**
 * Longest first within each group (vitest's own order when it has timings): the files of a
 * group share its workers, so the long ones must not start at the end.
 */
class LongestFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const position = new Map(base.map((f, i) => [f, i]));
    const seconds = (f: TestSpecification) => MEASURED_SECONDS[relative(f.project.config.root, f.moduleId)] ?? 0;
    return [...base].sort(
      (a, b) =>
        a.project.config.sequence.groupOrder - b.project.config.sequence.groupOrder ||
        seconds(b) - seconds(a) ||
        position.get(a)! - position.get(b)!,
    );
  }
}

/**
 * End-to-end files that must run with nothing else beside them. Every other e2e file uses its
 * own names, ports, state dirs and containers (or an engine of its own: dockerdRestart), so two
 * of them can run at once.
 * - scale.browser: 500 hosts heartbeating plus a browser; it asserts that 460 stay online.
 * - cluster: controllers, HAProxy and 20 agents racing for 300 jobs on 2 s heartbeats; an agent
 *   starved for three intervals loses its lease and its job is handed out twice.
 * Both load the CPU themselves and fail when a heartbeat waits too long for it.
 */
const alone = ["apps/dashboard/test/scale.browser.test.ts", "test/e2e/cluster.test.ts"];
const e2eFiles = ["test/**/*.test.ts", "apps/*/test/**/*.docker.test.ts", "apps/*/test/**/*.browser.test.ts"];

/**
 * Controller test files the `controller-pg` project leaves out, and why. Every other controller
 * test file runs on both engines.
 */
const notOnPostgres = [
  // run each contract on SQLite and on a fresh PostgreSQL database themselves
  "apps/controller/test/pg/**",
  // SQLite by nature: VACUUM INTO copies of the database file, restored from the file
  "apps/controller/test/backups.test.ts",
  // SQLite by nature: a missing or corrupt database file next to an installation
  "apps/controller/test/dataSafety.test.ts",
  // SQLite by nature: the group commit of the single SQLite writer, seen from a second connection to the file
  "apps/controller/test/groupCommit.test.ts",
  // SQLite by nature: the SQLite write facade's turn-bound transactions (PostgreSQL's: test/pg/facade.test.ts)
  "apps/controller/test/dbFacade.test.ts",
  // open no database: apps.yaml parsing, request signatures, the GitHub API client; the API
  // description's lint (the document does not depend on the engine)
  "apps/controller/test/appsConfig.test.ts",
  "apps/controller/test/openapi.lint.test.ts",
  "apps/controller/test/signedBody.test.ts",
  "apps/controller/test/github/client.test.ts",
];

/**
 * Runs where the test PostgreSQL cluster is (scripts/test.sh sources DEPLOYBOT_TEST_POSTGRES_URL
 * from .state/test-services.env), and always in CI, where a missing cluster fails the run
 * (pgGlobalSetup.ts) instead of skipping it.
 */
const withPostgres = Boolean(process.env.DEPLOYBOT_TEST_POSTGRES_URL) || process.env.CI === "true";
if (!withPostgres) console.warn("\n!!! SKIPPING the controller-pg project: DEPLOYBOT_TEST_POSTGRES_URL is not set. Run: sudo bash scripts/test-services.sh\n");
const controllerPg = withPostgres
  ? [
      {
        // The controller's tests again, on PostgreSQL: each harness opens an empty migrated database of the
        // test cluster (DEPLOYBOT_TEST_POSTGRES_URL, started by scripts/test-services.sh) instead
        // of an in-memory SQLite one (test/pgDatabases.ts). Group 0 like `unit`: it shares their 2 workers.
        test: {
          name: "controller-pg",
          include: ["apps/controller/test/**/*.test.ts"],
          exclude: [...notOnPostgres, "**/node_modules/**"],
          env: { DEPLOYBOT_TEST_DATABASE: "postgres" },
          globalSetup: ["apps/controller/test/pgGlobalSetup.ts"],
          testTimeout: 30_000,
          expect: { poll: { timeout: 10_000 } },
          sequence: { groupOrder: 0 },
        },
      },
    ]
  : [];

/**
 * Files of a group share one pool, and two groups run one after the other. The CI machine has
 * 2 cores: vitest's default (cores - 1) ran one file at a time, 800 s in all, while most e2e
 * files wait on the engine, on processes or on a clock, not on the CPU. Two workers share the
 * unit files and the e2e files of group 0; group 1 runs the files listed in `alone`, one at a time.
 */
const WORKERS = 2;

export default defineConfig({
  test: {
    // every project of group 0 takes this (vitest refuses projects of one group with different numbers)
    maxWorkers: WORKERS,
    sequence: { sequencer: LongestFirstSequencer },
    projects: [
      {
        test: {
          name: "unit",
          include: ["apps/*/test/**/*.test.ts", "packages/*/test/**/*.test.ts"],
          exclude: ["**/*.docker.test.ts", "**/*.browser.test.ts", "**/node_modules/**"],
          // 30 s: two files share the 2 cores now (the slowest unit tests took 7-10 s at load 10)
          testTimeout: 30_000,
          // expect.poll gives up after 1 s by default: too short for a busy 2-core machine
          expect: { poll: { timeout: 10_000 } },
          sequence: { groupOrder: 0 },
        },
      },
      ...controllerPg,
      {
        // Real Docker engine, registry, processes and browser: generous timeouts.
        test: {
          name: "e2e",
          include: e2eFiles,
          exclude: [...alone, "**/node_modules/**"],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          expect: { poll: { timeout: 60_000 } },
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          name: "e2e-alone",
          include: alone,
          testTimeout: 180_000,
          hookTimeout: 180_000,
          expect: { poll: { timeout: 60_000 } },
          fileParallelism: false,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
