import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ADMIN, type ControllerProcess, controllerProcess, JOIN } from "../../../test/harness/processes";
import { describeBrowser, ensureBuilt, expectAccessible, launchChromium, screenshot, signIn } from "./browser";

// shop runs on three hosts: shop-1 a current agent that ships, shop-2 an agent from before
// app-log shipping, shop-3 a current agent with shipping turned off. calm runs on shop-1 only;
// quiet on shop-1 (no output yet) and shop-2.
const APPS = `
apps:
  - name: shop
    repo: acme/shop
    hosts: [shop-1, shop-2, shop-3]
  - name: calm
    repo: acme/calm
    hosts: [shop-1]
  - name: quiet
    repo: acme/quiet
    hosts: [shop-1, shop-2]
`;
const OLD = "host shop-2 runs agent 0.1.0, which predates app-log shipping: the output of shop there never reaches the controller; upgrade the agent on shop-2";
const OFF =
  "the agent on host shop-3 has app-log shipping turned off (DEPLOYBOT_SHIP_APP_LOGS=false): the output of shop there never reaches the controller; set it to true and restart that agent";

/**
 * The app page's runtime logs when some of the app's hosts never send output: the view says which
 * and what to do (the `notice` events the log stream starts with), instead of staying empty.
 */
describeBrowser("dashboard: an app's log names the hosts that send no output", () => {
  let ctl: ControllerProcess;
  let browser: Browser;
  let current: { agent: { id: string }; token: string };
  let offset: number;

  /** Registers a host over HTTP as an agent of that version and capabilities does. */
  const register = async (hostname: string, version: string, capabilities: Record<string, unknown>) => {
    const res = await fetch(`${ctl.url}/v1/agents/register`, {
      method: "POST",
      headers: { authorization: `Bearer ${JOIN}`, "content-type": "application/json" },
      body: JSON.stringify({ hostname, version, capabilities }),
    });
    expect(res.status).toBe(200);
    return (await res.json()) as { agent: { id: string }; token: string };
  };

  /** Ships app output from shop-1 as its agent's shipper does, at its offset. */
  const ship = async (lines: { app: string; line: string }[]) => {
    const res = await fetch(`${ctl.url}/v1/agents/${current.agent.id}/app-logs`, {
      method: "POST",
      headers: { authorization: `Bearer ${current.token}`, "content-type": "application/json" },
      body: JSON.stringify({ offset, entries: lines.map((l) => ({ ts: new Date().toISOString(), container: `${l.app}-1`, stream: "stdout", ...l })) }),
    });
    expect(res.status).toBe(200);
    offset = ((await res.json()) as { offset: number }).offset;
  };

  beforeAll(async () => {
    ensureBuilt();
    ctl = await controllerProcess(APPS);
    const launched = launchChromium();
    current = await register("shop-1", "0.2.3", { volumes: true, appLogs: true });
    offset = 0;
    await ship([
      { app: "shop", line: "listening on :80" },
      { app: "calm", line: "calm and quiet" },
    ]);
    await register("shop-2", "0.1.0", {});
    await register("shop-3", "0.2.3", { volumes: true, appLogs: false });
    browser = await launched;
  });

  afterAll(async () => {
    await browser?.close();
    await ctl?.stop();
  });

  /** Signs in, then opens the app's page (a page opened before sign-in is done shows the form again). */
  const openLogs = async (page: Page, app: string) => {
    await signIn(page, ctl.url, ADMIN);
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await page.goto(`${ctl.url}/apps/${app}`);
    await page.getByRole("heading", { name: "Runtime logs" }).waitFor();
    const log = page.getByRole("log", { name: `Output of ${app}'s containers` });
    await expect.poll(() => page.getByTestId(`log-state-app-${app}`).textContent()).toBe("Log live");
    return log;
  };

  for (const { name, width, height } of [
    { name: "wide", width: 1280, height: 900 },
    { name: "narrow", width: 390, height: 844 },
  ]) {
    it(`on a ${name} screen: each silent host with why and what to do, above the lines of the hosts that ship`, async () => {
      const context = await browser.newContext({ viewport: { width, height } });
      const page = await context.newPage();
      const log = await openLogs(page, "shop");
      await expect.poll(() => log.textContent()).toBe("shop-1 listening on :80");
      const notices = page.getByRole("status").filter({ has: page.getByRole("heading", { name: "Hosts that send no output" }) });
      await expect.poll(() => notices.getByRole("listitem").allTextContents()).toEqual([OLD, OFF]);
      // above the lines, where a reader looks first
      const [said, lines] = await Promise.all([notices.boundingBox(), log.boundingBox()]);
      expect(said!.y + said!.height).toBeLessThanOrEqual(lines!.y);
      await notices.scrollIntoViewIfNeeded();
      await screenshot(page, `app-logs-silent-hosts-${name}`);
      // the page itself does not scroll sideways for the long messages
      expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(0);
      await expectAccessible(page, `the app page with silent hosts on a ${name} screen`);
      await context.close();
    });
  }

  it("an app whose hosts all ship shows its lines and no notice", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const log = await openLogs(page, "calm");
    await expect.poll(() => log.textContent()).toBe("shop-1 calm and quiet");
    expect(await page.locator(".log-state").textContent()).toBe("Log live · 1 line");
    expect(await page.getByRole("heading", { name: "Hosts that send no output" }).count()).toBe(0);
    expect(await page.getByTestId("log-notices-app-calm").getByRole("listitem").count()).toBe(0);
    await context.close();
  });

  it("a stream that reconnects before its first line says each host once, not once per connection", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    const log = await openLogs(page, "quiet");
    const said = page.getByTestId("log-notices-app-quiet").getByRole("listitem");
    await expect.poll(() => said.allTextContents()).toEqual([OLD.replaceAll("of shop", "of quiet")]);
    // the controller goes away and comes back: the view resumes with no Last-Event-ID (it has no
    // line yet), so the new stream starts with the same notice again
    await ctl.stop();
    await expect.poll(() => page.getByTestId("log-state-app-quiet").textContent()).toMatch(/^Log (re)?connecting/);
    await ctl.start();
    await expect.poll(() => page.getByTestId("log-state-app-quiet").textContent()).toBe("Log live");
    // a line shipped now comes after the new stream's notices: once it shows, they have been read
    await ship([{ app: "quiet", line: "first words" }]);
    await expect.poll(() => log.textContent()).toBe("shop-1 first words");
    expect(await said.allTextContents()).toEqual([OLD.replaceAll("of shop", "of quiet")]);
    await context.close();
  });
});
