import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../../apps/cli/test/runCli";
import { describeBrowser, ensureBuilt, expectAccessible, launchChromium, screenshot, signIn } from "../../apps/dashboard/test/browser";
import { ADMIN, type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, stopAgentAndProxy, waitFor } from "../harness/processes";
import { describeDocker, engineRequest, freePort, makeGitRepo, removeAppContainers, type TestGitRepo, testAppFiles, uniqueName } from "../support/docker";

const DAY = 86_400_000;
type Browser = Awaited<ReturnType<typeof launchChromium>>;

/**
 * The certificate each host proxy serves, from the agent's heartbeat to what a person sees:
 * GET /v1/apps/{name} `routes[].certificate`, `deploybot routes APP` and the app's page.
 */
describeBrowser("a routed app in the API, the CLI and the dashboard", () => {
  describeDocker("real controller and agent processes, the engine and HAProxy", () => {
    const app = uniqueName("certui");
    const host = uniqueName("certhost");
    const domain = `${app}.e2e.test`;
    const network = uniqueName("deploybot-e2e-net");
    let repo: TestGitRepo;
    let ctl: ControllerProcess;
    let agent: AgentProcess;
    let browser: Browser | undefined;
    const home = mkdtempSync(join(tmpdir(), "deploybot-certui-home-"));
    let deploymentId = "";

    beforeAll(async () => {
      ensureBuilt();
      repo = await makeGitRepo();
      await repo.commit(testAppFiles("c1", { salt: app }), "c1");
      // no image and no DEPLOYBOT_REGISTRY_URL: each host builds the app itself
      ctl = await controllerProcess(
        `
apps:
  - name: ${app}
    repo: acme/${app}
    url: ${repo.url}
    hosts: [${host}]
    domains: [${domain}]
    proxy: { port: 80, health_path: /health, drain_seconds: 1 }
    tls: internal
`,
        { DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "5" },
      );
      agent = agentProcess(ctl.url, host, {
        DEPLOYBOT_PROXY_HTTP_PORT: String(await freePort()),
        DEPLOYBOT_PROXY_HTTPS_PORT: String(await freePort()),
        DEPLOYBOT_PROXY_ADDRESS: "127.0.0.1",
        DEPLOYBOT_NETWORK: network,
      });
    });

    afterAll(async () => {
      await browser?.close();
      await stopAgentAndProxy(agent);
      await ctl?.stop();
      await removeAppContainers(app);
      await engineRequest("DELETE", `/networks/${network}`).catch(() => undefined);
      await repo?.cleanup();
      rmSync(home, { recursive: true, force: true });
    });

    it("the host's certificate (issuer, end, renewal) reaches the API, `deploybot routes` and the app's page; a scale and a removal show as such", async () => {
      const launched = launchChromium();
      const created = await ctl.api("POST", "/v1/deployments", { app, ref: "main" });
      expect(created.status).toBe(201);
      const id = created.body.deployment.id as string;
      deploymentId = id;
      const done = await waitFor(`deployment ${id}`, async () => {
        const d = (await ctl.api("GET", `/v1/deployments/${id}`)).body.deployment;
        return ["succeeded", "failed", "cancelled"].includes(d.status) ? d : undefined;
      });
      expect(done).toMatchObject({ status: "succeeded" });

      // the agent reports it with the route on its next heartbeat
      const route = await waitFor("the certificate in GET /v1/apps", async () => {
        const body = (await ctl.api("GET", `/v1/apps/${app}`)).body;
        return body.routes?.[0]?.certificate ? body.routes[0] : undefined;
      });
      expect(route).toMatchObject({ host, tls: "internal", certificate: { issuer: "deploybot internal CA" } });
      expect(route.certificateError).toBeUndefined();
      const validTo = Date.parse(route.certificate.validTo);
      // the host's CA issues for a year; it is ordered again 30 days before its end
      expect(validTo).toBeGreaterThan(Date.now() + 360 * DAY);
      expect(validTo - Date.parse(route.certificate.renewalDueAt)).toBe(30 * DAY);
      const until = route.certificate.validTo.slice(0, 10) as string;

      const cli = await runCli({ url: ctl.url, home }, ["routes", app], { env: { DEPLOYBOT_TOKEN: ADMIN } });
      expect(cli.code).toBe(0);
      expect(cli.stdout).toMatch(/HOST\s+CERTIFICATE\s+VALID UNTIL\s+RENEWS FROM\s+LAST ORDER/);
      expect(cli.stdout).toMatch(new RegExp(`${host}\\s+ok \\(deploybot internal CA\\)\\s+${until}\\s+\\d{4}-\\d\\d-\\d\\d\\s+-`));

      browser = await launched;
      const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
      await signIn(page, ctl.url, ADMIN);
      await page.getByRole("link", { name: "Apps" }).click();
      await page.getByRole("link", { name: app, exact: true }).click();
      const cell = page.getByTestId(`certificate-${host}`);
      await cell.waitFor();
      expect(await cell.textContent()).toMatch(new RegExp(`internal\\s*until ${until} · deploybot internal CA · renews from \\d{4}-\\d\\d-\\d\\d`));
      expect(await page.getByTestId("image-repository").textContent()).toMatch(/^none: each host builds it/);
      expect(await page.locator("main").textContent()).not.toContain("not reported to the controller");
      await screenshot(page, "app-routed-certificate");
      await expectAccessible(page, "the page of an app with a certificate");

      // scaled by hand: the page says so next to apps.yaml's count, and the host's row shows it
      const scaled = await runCli({ url: ctl.url, home }, ["scale", app, "2"], { env: { DEPLOYBOT_TOKEN: ADMIN }, timeoutMs: 120_000 });
      expect(scaled.code).toBe(0);
      await expect.poll(() => page.getByTestId("replicas").textContent(), { timeout: 60_000 }).toBe(`1 per host in apps.yaml · scaled to 2 on ${host} until the next deploy`);
      expect(await page.getByTestId(`host-state-${host}`).locator("td").first().textContent()).toMatch(/× 2$/);

      // removed on purpose: the page says removed (not missing), and the route is gone
      const removed = await runCli({ url: ctl.url, home }, ["remove", app], { env: { DEPLOYBOT_TOKEN: ADMIN }, timeoutMs: 120_000 });
      expect(removed.code).toBe(0);
      const is = page.getByTestId(`host-state-${host}`).locator("td").nth(1);
      await expect.poll(() => is.textContent(), { timeout: 60_000 }).toMatch(/^removed 0\/0 running/);
      await page.getByRole("link", { name: "Overview" }).click();
      await expect.poll(() => page.getByRole("row", { name: new RegExp(`^${app}`) }).textContent(), { timeout: 30_000 }).toContain(`${host} removed`);
      await waitFor("the route to leave GET /v1/apps", async () => ((await ctl.api("GET", `/v1/apps/${app}`)).body.routes.length === 0 ? true : undefined));
    });

    it("relative times move on while a page stays open, with no new data", async () => {
      const context = await browser!.newContext({ viewport: { width: 1280, height: 900 } });
      const page = await context.newPage();
      // the page's clock runs on as usual; fastForward moves it 15 s at once, short of the 30 s
      // background refresh, and no event reaches the page (each one would redraw it), so only
      // the page's own timer can change what it shows
      await page.clock.install();
      await page.route("**/v1/events*", (route) => route.abort());
      await signIn(page, ctl.url, ADMIN);
      await page.getByRole("link", { name: "Overview" }).waitFor();
      await page.goto(`${ctl.url}/deployments/${deploymentId}`);
      const started = page.locator("dl.facts dd time").first();
      await started.waitFor();
      const before = await started.textContent();
      await page.clock.fastForward(15_000);
      await expect.poll(() => started.textContent(), { timeout: 5000 }).not.toBe(before);
      await context.close();
    });
  });
});
