import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import AxeBuilder from "@axe-core/playwright";
import { type Browser, chromium, type Page } from "playwright-core";
import { describe, expect, it } from "vitest";

const dashboardDir = resolve(import.meta.dirname, "..");
const repoRoot = resolve(dashboardDir, "../..");
export const SCREENSHOTS = join(repoRoot, ".state/screenshots");

/** Debian's chromium (Playwright's own download cannot work here); scripts/test-services.d installs it in CI. */
export const CHROMIUM = process.env.DEPLOYBOT_TEST_CHROMIUM ?? "/usr/bin/chromium";

/**
 * `describe` for suites that drive the browser. Without chromium it FAILS under CI=true (a green
 * run that tested nothing is worse than a red one) and skips loudly elsewhere.
 */
export function describeBrowser(name: string, body: () => void): void {
  if (existsSync(CHROMIUM)) {
    describe(name, body);
    return;
  }
  const message = `no chromium at ${CHROMIUM}: apt-get install chromium, or run sudo bash scripts/test-services.sh`;
  if (process.env.CI === "true") {
    describe(name, () => it("has chromium", () => expect.fail(message)));
    return;
  }
  console.warn(`\n!!! SKIPPING "${name}": ${message}\n`);
  describe.skip(name, body);
}

/** Builds the dashboard when dist/ is missing (scripts/test.sh builds it before the tests). */
export function ensureBuilt(): void {
  if (existsSync(join(dashboardDir, "dist/index.html"))) return;
  execFileSync(process.execPath, [join(dashboardDir, "node_modules/vite/bin/vite.js"), "build"], { cwd: dashboardDir, stdio: "inherit" });
}

/**
 * Chromium with a fresh temporary profile per launch (Playwright makes and removes it), no
 * sandbox (we run as root in CI) and nothing that reaches the network on its own.
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** Signs in through the login form, as a person would. */
export async function signIn(page: Page, baseUrl: string, token: string): Promise<void> {
  await page.goto(`${baseUrl}/`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** No serious or critical axe violation on the page as it is now. */
export async function expectAccessible(page: Page, what: string): Promise<void> {
  const results = await new AxeBuilder({ page }).analyze();
  const bad = results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.length}x, e.g. ${v.nodes[0]?.target.join(" ")})`);
  expect(bad, `accessibility of ${what}`).toEqual([]);
}

/** A full-page screenshot kept as a test artefact under .state/screenshots. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const file = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

export function writeMetrics(name: string, data: unknown): void {
  mkdirSync(join(repoRoot, ".state"), { recursive: true });
  writeFileSync(join(repoRoot, `.state/${name}.json`), `${JSON.stringify(data, null, 2)}\n`);
}
