import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["apps/*/test/**/*.test.ts", "packages/*/test/**/*.test.ts"],
          exclude: ["**/*.docker.test.ts", "**/*.browser.test.ts", "**/node_modules/**"],
          testTimeout: 15_000,
        },
      },
      {
        // Real Docker engine, registry, processes and browser: serial, generous timeouts.
        test: {
          name: "e2e",
          include: ["test/**/*.test.ts", "apps/*/test/**/*.docker.test.ts", "apps/*/test/**/*.browser.test.ts"],
          testTimeout: 180_000,
          hookTimeout: 180_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
