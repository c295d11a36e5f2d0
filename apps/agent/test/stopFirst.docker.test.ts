import { afterAll, beforeAll, expect, it } from "vitest";
import { describeDocker, uniqueName } from "../../../test/support/docker";
import { failures, startLoad } from "../../../test/support/load";
import { eventually, type ProxyWorld, proxyWorld, viaProxy } from "./proxyFixture";

/**
 * stop_first for an app with domains: the old container leaves the route and stops before the
 * new one starts, so requests fail in between (what the setting trades for never opening the
 * data twice). The gap is measured, not asserted.
 */
describeDocker("stop_first through the host proxy (real engine + HAProxy)", () => {
  let world: ProxyWorld;
  const app = uniqueName("rsf");
  const domain = `${app}.deploybot.test`;

  beforeAll(async () => {
    world = await proxyWorld();
  });
  afterAll(async () => {
    await world?.cleanup();
  });

  it("stops the old container before the new one starts; the gap is measured", async () => {
    const route = { domains: [domain], stopFirst: true, proxy: { drain_seconds: 1 } };
    expect(await world.deploy(app, "s1", route)).toMatchObject({ ok: true });
    const lines: string[] = [];
    const load = startLoad({ port: world.httpPort, host: domain, ratePerSecond: 100 });
    await new Promise((r) => setTimeout(r, 500));
    const outcome = await world.deploy(app, "s2", { ...route, onLog: (line) => lines.push(line) });
    await eventually("s2 serving", async () => (await viaProxy(world.httpPort, domain))?.body === "s2");
    await new Promise((r) => setTimeout(r, 300));
    const samples = await load.stop();
    expect(outcome).toMatchObject({ ok: true });
    const stopAt = lines.findIndex((l) => /stop_first: stopping/.test(l));
    const startAt = lines.findIndex((l) => /healthy/.test(l));
    expect(stopAt).toBeGreaterThanOrEqual(0);
    expect(stopAt).toBeLessThan(startAt);
    // the old release never answers after the new one did
    const firstNew = samples.findIndex((s) => s.body === "s2");
    expect(samples.slice(firstNew).some((s) => s.body === "s1")).toBe(false);
    const failed = failures(samples);
    const gap = failed.length > 0 ? failed[failed.length - 1]!.at - failed[0]!.at : 0;
    console.log(`stop_first with a domain: ${failed.length} of ${samples.length} requests failed over ${gap} ms (100 req/s, drain_seconds 1)`);
  });
});
