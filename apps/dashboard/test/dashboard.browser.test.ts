import { readFileSync } from "node:fs";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ADMIN, type AgentProcess, agentProcess, type ControllerProcess, controllerProcess, waitFor, waitForJob } from "../../../test/harness/processes";
import { describeDocker, freePort, httpGet, makeGitRepo, removeAppContainers, type TestGitRepo, testAppFiles, testRegistry, uniqueName } from "../../../test/support/docker";
import { describeBrowser, ensureBuilt, expectAccessible, launchChromium, screenshot, signIn } from "./browser";

/** Waits for the deployment page on screen to say succeeded; a failure ends the wait with the page's text. */
async function deploymentSucceedsOnScreen(page: Page, what: string) {
  await waitFor(
    `${what} to succeed on screen`,
    async () => {
      const status = (await page.getByTestId("deployment-status").textContent()) ?? "";
      if (/failed|cancelled|superseded/.test(status)) throw new Error(`${what} ended ${status}: ${await page.locator("main").textContent()}`);
      return status.includes("succeeded") ? true : undefined;
    },
    150_000,
  );
}

/**
 * The dashboard as a person uses it, in Debian's chromium, against real controller and agent
 * processes, the real Docker engine and registry, and a bare git repository.
 */
describeBrowser("dashboard in a browser", () => {
  describeDocker("with a real controller, agent and Docker engine", () => {
    const app = uniqueName("ui");
    const host = uniqueName("uihost");
    let port: number;
    let repo: TestGitRepo;
    let ctl: ControllerProcess;
    let agent: AgentProcess;
    let browser: Browser;
    let admin: BrowserContext;
    let page: Page;
    let readToken: string;
    const versions: string[] = [];

    beforeAll(async () => {
      ensureBuilt();
      port = await freePort();
      repo = await makeGitRepo();
      versions.push((await repo.commit(testAppFiles("v1", { salt: app }), "v1")).slice(0, 12));
      ctl = await controllerProcess(
        `
apps:
  - name: ${app}
    repo: acme/${app}
    url: ${repo.url}
    hosts: [${host}]
    image: ${testRegistry.host}/${app}
    run:
      ports: ["127.0.0.1:${port}:80"]
      healthcheck: { path: /health, port: 80, timeout_seconds: 8 }
      memory: 64m
    schedules:
      - name: report
        cron: "0 0 1 1 *"
        command: ["sh", "-c", "echo report-of-$(cat /www/index.html) > /tmp/report.txt"]
        result_file: /tmp/report.txt
`,
        {
          // the agent long-polls 5 s at a time: a 5 s interval keeps it online (3 intervals) on a busy machine
          DEPLOYBOT_HEARTBEAT_INTERVAL_SECONDS: "5",
          DEPLOYBOT_REGISTRY_URL: testRegistry.host,
          DEPLOYBOT_REGISTRY_USERNAME: testRegistry.username,
          DEPLOYBOT_REGISTRY_PASSWORD: testRegistry.password,
        },
      );
      agent = agentProcess(ctl.url, host);
      const launched = launchChromium();
      await waitFor("the agent to register", async () => {
        const { body } = await ctl.api("GET", "/v1/hosts");
        return body.hosts.find((h: { hostname: string; online: boolean }) => h.hostname === host && h.online);
      });
      readToken = (await ctl.api("POST", "/v1/tokens", { name: "viewer", scope: "read" })).body.token;
      browser = await launched;
      admin = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      page = await admin.newPage();
    });

    afterAll(async () => {
      await browser?.close();
      await agent?.stop();
      await ctl?.stop();
      await removeAppContainers(app);
      await repo?.cleanup();
    });

    it("a bad token is refused at sign-in and nothing is kept", async () => {
      const context = await browser.newContext();
      const p = await context.newPage();
      await signIn(p, ctl.url, "dbt_this-token-does-not-exist");
      await expect.poll(() => p.getByRole("alert").textContent()).toContain("refused this token");
      expect(await p.evaluate(() => sessionStorage.length)).toBe(0);
      // the API behind it says the same
      expect((await p.evaluate(() => fetch("/v1/hosts", { headers: { authorization: "Bearer dbt_nope" } }).then((r) => r.status)))).toBe(401);
      await screenshot(p, "login-refused");
      await expectAccessible(p, "the sign-in page");
      await context.close();
    });

    it("an admin signs in and sees the overview: the host online, the app, no deployment yet", async () => {
      await signIn(page, ctl.url, ADMIN);
      await expect.poll(() => page.getByTestId("hosts-online").textContent()).toBe("1");
      expect(await page.getByTestId("scope").textContent()).toContain("admin");
      // live updates come from GET /v1/events
      await expect.poll(() => page.getByTestId("live-mode").textContent()).toBe("Live");
      await page.getByRole("link", { name: app }).waitFor();
      await screenshot(page, "overview-empty");
      await expectAccessible(page, "the overview");
    });

    it("deploying from the app page streams the build and deploy logs live, to success, without a reload", async () => {
      await page.getByRole("link", { name: "Apps", exact: true }).click();
      await page.getByRole("link", { name: app }).click();
      await page.getByRole("heading", { name: `App ${app}` }).waitFor();
      await expectAccessible(page, "the app page");
      await page.getByRole("button", { name: `Deploy ${app}` }).click();
      await page.waitForURL(/\/deployments\/dep_/);
      // one document from here to the end: a reload would lose this marker
      await page.evaluate(() => Object.assign(window, { sameDocument: true }));
      const status = page.getByTestId("deployment-status");
      const buildLog = page.locator("pre.log").first();
      // Live: log lines are on screen while the deployment has not finished yet.
      await waitFor(
        "log lines before the deployment ends",
        async () => {
          const lines = await buildLog.locator("div").count();
          const now = (await status.textContent()) ?? "";
          if (now.includes("failed")) throw new Error(`the deployment failed: ${await page.locator("main").textContent()}`);
          expect(now).not.toContain("succeeded");
          return lines > 0 ? true : undefined;
        },
        120_000,
        100,
      );
      expect(await page.locator("[data-testid^=log-state-]").first().textContent()).toMatch(/live|complete/);
      await waitFor("the deployment to succeed on screen", async () => ((await status.textContent())?.includes("succeeded") ? true : undefined), 180_000);
      expect(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument)).toBe(true);
      // every job's log reached its end, and the app answers with the deployed version
      await waitFor("every log to complete", async () => {
        const states = await page.locator("[data-testid^=log-state-]").allTextContents();
        return states.length >= 2 && states.every((s) => s.includes("complete")) ? true : undefined;
      });
      expect(await page.locator("pre.log").last().textContent()).toMatch(/health/i);
      expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v1\n" });
      await screenshot(page, "deployment");
      await expectAccessible(page, "the deployment page");
    });

    it("rolling back from the releases table brings the previous release back", async () => {
      versions.push((await repo.commit(testAppFiles("v2", { salt: app }), "v2")).slice(0, 12));
      const res = await ctl.api("POST", "/v1/deployments", { app });
      expect(res.status).toBe(201);
      for (const job of res.body.deployment.jobs) expect((await waitForJob(ctl, job.id)).status).toBe("succeeded");
      await waitFor("the v2 deployment to finish", async () => {
        const { body } = await ctl.api("GET", `/v1/deployments/${res.body.deployment.id}`);
        return body.deployment.status === "succeeded" ? true : undefined;
      });
      expect(await httpGet(port, "/")).toMatchObject({ body: "v2\n" });

      await page.getByRole("link", { name: "Apps", exact: true }).click();
      await page.getByRole("link", { name: app }).click();
      await expect.poll(() => page.getByTestId("current-release").textContent()).toBe(versions[1]);
      await expect.poll(() => page.getByTestId(`release-${versions[1]}`).textContent()).toContain("current");
      await screenshot(page, "app");
      await page.getByRole("button", { name: `Roll back to ${versions[0]}` }).click();
      await page.getByRole("button", { name: `Confirm roll back to ${versions[0]}` }).click();
      await page.waitForURL(/\/deployments\/dep_/);
      await deploymentSucceedsOnScreen(page, "the rollback");
      expect(await page.locator("main").textContent()).toContain("rollback");
      expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v1\n" });
      await page.getByRole("link", { name: app }).first().click();
      await expect.poll(() => page.getByTestId("current-release").textContent()).toBe(versions[0]);
    });

    it("a schedule runs now from the app page; its run, exit code and result file show up", async () => {
      await page.getByRole("link", { name: "Apps", exact: true }).click();
      await page.getByRole("link", { name: app }).click();
      const schedule = page.getByTestId("schedule-report");
      await schedule.waitFor();
      expect(await schedule.textContent()).toContain("never");
      await page.getByRole("button", { name: "Run report now" }).click();
      await waitFor("the run to succeed on screen", async () => {
        const text = (await schedule.textContent()) ?? "";
        if (/failed|lost|timed out/.test(text)) throw new Error(`the run ended: ${await page.locator("main").textContent()}`);
        return text.includes("succeeded") ? true : undefined;
      });
      const run = page.getByRole("row", { name: /report manual/ });
      await expect.poll(() => run.textContent()).toContain("report.txt");
      expect(await run.textContent()).toMatch(/succeeded\s*0/);
      const download = page.waitForEvent("download");
      await run.getByRole("button", { name: /report\.txt/ }).click();
      const file = await (await download).path();
      expect(readFileSync(file, "utf8")).toBe("report-of-v1\n");
      await screenshot(page, "app-schedules");
      await expectAccessible(page, "the app page with schedules and runs");
    });

    it("hosts, jobs (filtered), a job, webhooks, tokens and secrets: each page renders and passes axe", async () => {
      await page.getByRole("link", { name: "Hosts" }).click();
      await page.getByRole("row", { name: new RegExp(host) }).waitFor();
      expect(await page.getByRole("row", { name: new RegExp(host) }).textContent()).toContain("online");
      await screenshot(page, "hosts");
      await expectAccessible(page, "the hosts page");

      await page.getByRole("link", { name: "Jobs" }).click();
      await page.getByLabel("Status").selectOption("succeeded");
      await page.getByRole("button", { name: "Apply" }).click();
      await page.waitForURL(/status=succeeded/);
      await expect.poll(() => page.locator("main tbody tr").count()).toBe(6);
      for (const row of await page.locator("main tbody tr").allTextContents()) expect(row).toContain("succeeded");
      await screenshot(page, "jobs");
      await expectAccessible(page, "the jobs page");
      await page.locator("main tbody tr a").first().click();
      await page.getByRole("heading", { name: "Log" }).waitFor();
      await expect.poll(() => page.locator("[data-testid^=log-state-]").textContent()).toContain("complete");
      // a job that ended shows the attempts it took, not a count of retries still to come
      expect(await page.locator("dt:text-is('Attempts') + dd").textContent()).toBe("1");
      await screenshot(page, "job");
      await expectAccessible(page, "the job page");

      await page.getByRole("link", { name: "Webhooks" }).click();
      await page.getByText("No delivery yet").waitFor();
      await expectAccessible(page, "the webhooks page");

      await page.getByRole("link", { name: "Tokens & secrets" }).click();
      await page.getByRole("row", { name: /viewer/ }).waitFor();
      await page.getByLabel("Name", { exact: true }).fill("GREETING_KEY");
      await page.getByLabel("Value").fill("value-never-shown-again");
      await page.getByRole("button", { name: "Set secret" }).click();
      await page.getByRole("button", { name: "Remove GREETING_KEY" }).waitFor();
      expect(await page.content()).not.toContain("value-never-shown-again");
      await screenshot(page, "settings");
      await expectAccessible(page, "the tokens and secrets page");
    });

    it("a read-only token sees every page but no action, and the API refuses it anyway", async () => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const p = await context.newPage();
      await signIn(p, ctl.url, readToken);
      await expect.poll(() => p.getByTestId("scope").textContent()).toContain("read");
      expect(await p.getByRole("link", { name: "Tokens & secrets" }).count()).toBe(0);
      await p.getByRole("link", { name: app }).first().click();
      await p.getByRole("heading", { name: "Releases" }).waitFor();
      await expect.poll(() => p.getByTestId("current-release").textContent()).toBe(versions[0]);
      // reading is all it may do: sign out and download a run's result file, nothing that changes anything
      await p.getByRole("button", { name: /report\.txt/ }).waitFor();
      expect((await p.getByRole("button").allTextContents()).filter((b) => b !== "Sign out" && !/^report\.txt \(/.test(b))).toEqual([]);
      expect(await p.getByRole("heading", { name: "Secrets" }).count()).toBe(0);
      await screenshot(p, "app-read-only");
      await expectAccessible(p, "the app page for a read-only token");
      const status = await p.evaluate(
        async ([name, token]) => (await fetch("/v1/deployments", { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify({ app: name }) })).status,
        [app, readToken] as const,
      );
      expect(status).toBe(403);
      await context.close();
    });

    it("a deploy token limited to another app neither sees this app nor gets an action on it", async () => {
      const limited = (await ctl.api("POST", "/v1/tokens", { name: "other-ci", scope: "deploy", apps: ["some-other-app"] })).body.token;
      const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
      const p = await context.newPage();
      await signIn(p, ctl.url, limited);
      await expect.poll(() => p.getByTestId("scope").textContent()).toContain("deploy");
      await p.getByText("No app this token may see").waitFor();
      await p.goto(`${ctl.url}/apps/${app}`);
      await expect.poll(() => p.getByRole("alert").first().textContent()).toContain("limited to");
      expect(await p.getByRole("button").allTextContents()).toEqual(["Sign out"]);
      await context.close();
    });

    it("the image picker: a tag of the app's remote is built into the catalog, then deployed from it", async () => {
      await repo.commit(testAppFiles("v3", { salt: app }), "v3");
      await repo.tag("v3.0.0");
      await page.getByRole("link", { name: "Images" }).click();
      await page.getByText(`No image in the catalog yet.`).waitFor();
      await page.getByLabel("App", { exact: true }).first().selectOption(app);
      await expect.poll(() => page.getByLabel("Tag").inputValue()).toBe("v3.0.0");
      await page.getByRole("button", { name: "Build image" }).click();
      const row = page.getByTestId(`image-${app}-v3.0.0`);
      await row.waitFor();
      await waitFor("the image to build", async () => {
        const text = (await row.textContent()) ?? "";
        if (text.includes("failed")) throw new Error(`the image build failed: ${text}`);
        return text.includes("success") ? true : undefined;
      });
      await screenshot(page, "images");
      await expectAccessible(page, "the images page");
      await page.getByRole("button", { name: `Deploy ${app} v3.0.0` }).click();
      await page.waitForURL(/\/deployments\/dep_/);
      await deploymentSucceedsOnScreen(page, "the image deployment");
      expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v3\n" });
    });

    it("the overview lists the deployments", async () => {
      await page.getByRole("link", { name: "Overview" }).click();
      await expect.poll(() => page.locator("main table").first().locator("tbody tr").count()).toBe(4);
      await screenshot(page, "overview");
    });

    it("on a phone-sized screen no page scrolls sideways: wide tables scroll in their own box", async () => {
      const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
      const p = await context.newPage();
      await signIn(p, ctl.url, ADMIN);
      const jobId = (await ctl.api("GET", "/v1/jobs?limit=1")).body.jobs[0].id as string;
      const pages = ["/", "/hosts", "/apps", `/apps/${app}`, "/images", "/jobs", `/jobs/${jobId}`, "/webhooks", "/settings"];
      const wider: string[] = [];
      for (const path of pages) {
        await p.goto(`${ctl.url}${path}`);
        await p.locator("main h1").waitFor();
        await p.locator("main [aria-busy=true]").waitFor({ state: "detached" });
        // the page itself, not a table's own box, is what a reader would have to scroll sideways
        const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        if (overflow > 0) wider.push(`${path}: ${overflow} px`);
      }
      await p.goto(`${ctl.url}/apps/${app}`);
      await p.locator("main table").first().waitFor();
      await screenshot(p, "app-narrow");
      expect(wider, "pages wider than a 390 px screen").toEqual([]);
      await expectAccessible(p, "the app page on a narrow screen");
      await context.close();
    });

    it("stop and start the app from its page: the host's state follows, the app stops and comes back", async () => {
      await page.getByRole("link", { name: "Apps", exact: true }).click();
      await page.getByRole("link", { name: app }).click();
      const row = page.getByTestId(`host-state-${host}`);
      const is = row.locator("td").nth(1);
      await expect.poll(() => is.textContent(), { timeout: 60_000 }).toMatch(/^running/);
      await page.getByRole("button", { name: "Stop", exact: true }).click();
      await page.getByRole("status").filter({ hasText: "stop queued on 1 host" }).waitFor();
      await waitFor("the app to show stopped", async () => ((await is.textContent())?.startsWith("stopped") || (await is.textContent())?.startsWith("missing") ? true : undefined), 120_000);
      expect(await row.locator("td").first().textContent()).toContain("stopped");
      expect((await httpGet(port, "/"))?.status ?? null).not.toBe(200);
      await screenshot(page, "app-stopped");
      await expectAccessible(page, "the app page with operations");
      await page.getByRole("button", { name: "Start", exact: true }).click();
      await page.getByRole("status").filter({ hasText: "start queued on 1 host" }).waitFor();
      await waitFor("the app to show running again", async () => ((await is.textContent())?.startsWith("running") ? true : undefined), 120_000);
      await waitFor("the app to answer again", async () => ((await httpGet(port, "/"))?.status === 200 ? true : undefined), 60_000);
      expect(await httpGet(port, "/")).toMatchObject({ status: 200, body: "v3\n" });
    });
  });
});
