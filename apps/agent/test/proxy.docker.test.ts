import { afterAll, beforeAll, expect, it } from "vitest";
import { describeDocker, freePort, httpGet, uniqueName } from "../../../test/support/docker";
import { failures, startLoad } from "../../../test/support/load";
import { eventually, type ProxyWorld, proxyWorld, viaProxy } from "./proxyFixture";

describeDocker("routing through the host proxy (real engine + HAProxy)", () => {
  let world: ProxyWorld;
  const a = uniqueName("rta");
  const b = uniqueName("rtb");
  const domainA = `${a}.deploybot.test`;
  const domainB = `${b}.deploybot.test`;

  beforeAll(async () => {
    world = await proxyWorld();
  });
  afterAll(async () => {
    await world?.cleanup();
  });

  it("routes two apps on one host by Host header, with no host port published", async () => {
    expect(await world.deploy(a, "a1", { domains: [domainA] })).toMatchObject({ ok: true });
    expect(await world.deploy(b, "b1", { domains: [domainB] })).toMatchObject({ ok: true });
    expect(await viaProxy(world.httpPort, domainA)).toEqual({ status: 200, body: "a1" });
    expect(await viaProxy(world.httpPort, domainB)).toEqual({ status: 200, body: "b1" });
    expect(await viaProxy(world.httpPort, `${domainB}:${world.httpPort}`)).toEqual({ status: 200, body: "b1" });
    expect((await viaProxy(world.httpPort, "unknown.deploybot.test"))?.status).toBe(404);
    const routes = await world.proxy.routes();
    expect(routes.map((r) => r.app).sort()).toEqual([a, b].sort());
    expect(routes.find((r) => r.app === a)?.upstreams).toEqual([expect.objectContaining({ state: "ready", release: "a1" })]);
  });

  it("redeploys under load with 0 failed requests", async () => {
    const load = startLoad({ port: world.httpPort, host: domainA, ratePerSecond: 100 });
    await new Promise((r) => setTimeout(r, 500));
    expect(await world.deploy(a, "a2", { domains: [domainA] })).toMatchObject({ ok: true });
    await eventually("a2 serving", async () => (await viaProxy(world.httpPort, domainA))?.body === "a2");
    await new Promise((r) => setTimeout(r, 500));
    const samples = await load.stop();
    expect(samples.length).toBeGreaterThan(100);
    expect(failures(samples)).toEqual([]);
    expect(samples.some((s) => s.body === "a1") && samples.some((s) => s.body === "a2")).toBe(true);
  });

  it("a release that fails its health check never enters the route: 0 failed requests, the old one keeps serving", async () => {
    const load = startLoad({ port: world.httpPort, host: domainA, ratePerSecond: 100 });
    const outcome = await world.deploy(a, "a3-broken", { domains: [domainA], healthy: false });
    const samples = await load.stop();
    expect(outcome).toMatchObject({ ok: false, error: expect.stringContaining("health check") });
    expect(failures(samples)).toEqual([]);
    expect(samples.every((s) => s.body === "a2")).toBe(true);
    expect(await viaProxy(world.httpPort, domainA)).toEqual({ status: 200, body: "a2" });
  });

  it("3 replicas each take traffic and roll to the next release with 0 failed requests", async () => {
    expect(await world.deploy(b, "b2", { domains: [domainB], replicas: 3 })).toMatchObject({ ok: true });
    const ids = new Set<string>();
    for (let i = 0; i < 12; i++) ids.add((await viaProxy(world.httpPort, domainB, "/id"))?.body ?? "");
    expect(ids.size).toBe(3);
    const load = startLoad({ port: world.httpPort, host: domainB, ratePerSecond: 100 });
    const outcome = await world.deploy(b, "b3", { domains: [domainB], replicas: 3 });
    const samples = await load.stop();
    expect(outcome).toMatchObject({ ok: true });
    expect(failures(samples)).toEqual([]);
    const route = (await world.proxy.routes()).find((r) => r.app === b);
    expect(route?.upstreams).toHaveLength(3);
    expect(route?.upstreams.every((u) => u.release === "b3")).toBe(true);
  });

  it("a cancel during a 3-replica roll puts the old release back with never fewer than 3 upstreams and 0 failed requests", async () => {
    const before = new Set((await world.proxy.routes()).find((r) => r.app === b)?.upstreams.map((u) => u.container));
    expect(before.size).toBe(3);
    let fewest = 3;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        fewest = Math.min(fewest, world.proxy.table.get(b)?.upstreams.length ?? 0);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const load = startLoad({ port: world.httpPort, host: domainB, ratePerSecond: 100 });
    // Cancelled once the first old container has left the route: one replica of b4 serves then.
    const outcome = await world.deploy(b, "b4", { domains: [domainB], replicas: 3, cancelWhen: (line) => line.includes("out of the route") });
    const samples = await load.stop();
    watching = false;
    await watch;
    expect(outcome).toMatchObject({ ok: false, error: "cancelled" });
    expect(failures(samples)).toEqual([]);
    expect(samples.some((s) => s.body === "b4")).toBe(true);
    expect(fewest).toBeGreaterThanOrEqual(3);
    const route = (await world.proxy.routes()).find((r) => r.app === b);
    expect(route?.upstreams).toHaveLength(3);
    expect(route?.upstreams.every((u) => u.release === "b3" && u.state === "ready")).toBe(true);
    await eventually("every upstream up", async () => (await world.proxy.routes()).find((r) => r.app === b)?.upstreams.every((u) => u.health === "up") ?? false);
    const after = new Set(route?.upstreams.map((u) => u.container));
    // the two never touched plus the one that was stopped and came back
    expect(after).toEqual(before);
    const ids = new Set<string>();
    for (let i = 0; i < 12; i++) ids.add((await viaProxy(world.httpPort, domainB, "/id"))?.body ?? "");
    expect(ids.size).toBe(3);
    expect((await viaProxy(world.httpPort, domainB))?.body).toBe("b3");
  });

  it("an agent restart and a HAProxy restart each restore every route", async () => {
    // Agent restart: HAProxy keeps running; the new agent converges (seamless reload).
    await world.restartAgent().converge();
    expect(await viaProxy(world.httpPort, domainA)).toEqual({ status: 200, body: "a2" });
    expect(await viaProxy(world.httpPort, domainB)).toEqual({ status: 200, body: "b3" });
    // HAProxy stops: the agent's watchdog brings it back with every route.
    const watching = new AbortController();
    const watch = world.proxy.watch(watching.signal, 500);
    await world.proxy.stop();
    expect(await viaProxy(world.httpPort, domainA)).toBeNull();
    await eventually("routes restored", async () => (await viaProxy(world.httpPort, domainA))?.body === "a2");
    expect(await viaProxy(world.httpPort, domainB)).toEqual({ status: 200, body: "b3" });
    watching.abort();
    await watch;
    // Both down (a host reboot): the agent's start converges from its table alone.
    await world.proxy.stop();
    await world.restartAgent().converge();
    expect(await viaProxy(world.httpPort, domainA)).toEqual({ status: 200, body: "a2" });
  });

  it("an app whose domains are taken out leaves the proxy: its old domains answer 404 and another app may take them", async () => {
    const c = uniqueName("rtc");
    const domainC = `${c}.deploybot.test`;
    expect(await world.deploy(c, "c1", { domains: [domainC] })).toMatchObject({ ok: true });
    expect(await viaProxy(world.httpPort, domainC)).toEqual({ status: 200, body: "c1" });

    // apps.yaml now publishes a port instead (port mode)
    const port = await freePort();
    const lines: string[] = [];
    expect(await world.deploy(c, "c2", { domains: [], ports: [`127.0.0.1:${port}:80`], onLog: (l) => lines.push(l) })).toMatchObject({ ok: true });
    expect((await httpGet(port, "/"))?.body.trim()).toBe("c2");
    expect(lines).toContain(`deploy: ${c} has no domains now: ${domainC} left this host's proxy`);
    expect(world.proxy.table.get(c)).toBeUndefined();
    expect((await world.proxy.routes()).map((r) => r.app)).not.toContain(c);
    expect(await viaProxy(world.httpPort, domainC)).toMatchObject({ status: 404 });

    // the domain is free on this host again
    const d = uniqueName("rtd");
    expect(await world.deploy(d, "d1", { domains: [domainC] })).toMatchObject({ ok: true });
    expect(await viaProxy(world.httpPort, domainC)).toEqual({ status: 200, body: "d1" });
  });
});
