import { X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import https from "node:https";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeDocker, testAcme, uniqueName } from "../../../test/support/docker";
import { startLoad } from "../../../test/support/load";
import { renewalDueAt } from "../src/proxy/certificates";
import { httpsGet, type ProxyWorld, proxyWorld, viaProxy } from "./proxyFixture";

/** Pebble makes a new root at every start: the test asks for the current one. */
function pebbleRoot(): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(testAcme!.rootsUrl, { ca: readFileSync(testAcme!.tlsCaFile), timeout: 5000 }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => {
          body += c.toString();
        });
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

describeDocker("TLS on the host proxy: ACME (Pebble) and the host's internal CA", () => {
  let world: ProxyWorld;
  const app = uniqueName("tls");
  const domain = `${app}.deploybot.test`;
  const privateApp = uniqueName("tlsint");
  const privateDomain = `${privateApp}.internal.test`;

  beforeAll(async () => {
    if (!testAcme) throw new Error("Pebble is not running: bash scripts/test-services.sh starts it");
    world = await proxyWorld({ acmeCaCertFile: testAcme.tlsCaFile });
  });
  afterAll(async () => {
    await world?.cleanup();
  });

  it("a certificate issued by Pebble is served on the https port, http redirects to https, and restarts reuse it", async () => {
    const acme = { directory: testAcme!.directory, email: "ops@deploybot.test" };
    expect(await world.deploy(app, "t1", { domains: [domain], tls: "auto", acme })).toMatchObject({ ok: true });
    const root = await pebbleRoot();
    const first = await httpsGet(world.httpsPort, domain, root);
    expect(first).toMatchObject({ status: 200, body: "t1" });
    expect(first.issuer).toMatch(/Pebble Intermediate/);
    const redirect = await viaProxy(world.httpPort, domain, "/path?q=1");
    expect(redirect).toMatchObject({ status: 308, location: `https://${domain}:${world.httpsPort}/path?q=1` });

    const certFile = world.proxy.certs.certFile(app);
    const issuedAt = statSync(certFile).mtimeMs;
    // A redeploy, an agent restart and a HAProxy restart serve the same certificate, ordering none.
    expect(await world.deploy(app, "t2", { domains: [domain], tls: "auto", acme })).toMatchObject({ ok: true });
    await world.proxy.stop();
    await world.restartAgent().converge();
    const after = await httpsGet(world.httpsPort, domain, root);
    expect(after).toMatchObject({ status: 200, body: "t2", fingerprint: first.fingerprint });
    expect(statSync(certFile).mtimeMs).toBe(issuedAt);
  });

  it("tls: internal serves a certificate of the host's own CA", async () => {
    expect(await world.deploy(privateApp, "p1", { domains: [privateDomain], tls: "internal" })).toMatchObject({ ok: true });
    const ca = readFileSync(world.proxy.certs.internalCaFile, "utf8");
    expect(await httpsGet(world.httpsPort, privateDomain, ca)).toMatchObject({ status: 200, body: "p1", issuer: "deploybot internal CA" });
    // The ACME app keeps its own certificate next to it (SNI).
    await expect(httpsGet(world.httpsPort, domain, ca)).rejects.toThrow();
  });

  it("the renewal check orders a certificate again from Pebble once it is due, and serves it without a failed request", async () => {
    const certFile = world.proxy.certs.certFile(app);
    const before = new X509Certificate(readFileSync(certFile));
    const issuedAt = statSync(certFile).mtimeMs;
    // Not due yet: nothing is ordered, nothing is rewritten.
    expect(await world.proxy.renewCertificates()).toEqual({ renewed: [], failed: [] });
    expect(statSync(certFile).mtimeMs).toBe(issuedAt);

    // The check as it runs the day the certificate is due (the clock moved for the decision
    // only; the order, the challenge and the reload are real).
    const due = renewalDueAt(new Date(before.validFrom), new Date(before.validTo)).getTime();
    const load = startLoad({ port: world.httpPort, host: privateDomain, ratePerSecond: 50 });
    const outcome = await world.proxy.renewCertificates(due);
    const samples = await load.stop();
    expect(outcome.failed).toEqual([]);
    expect(outcome.renewed).toContain(app);
    // http answers the redirect: every request of the load got one, through the reload
    expect(samples.length).toBeGreaterThan(0);
    expect(samples.filter((s) => s.status !== 308)).toEqual([]);

    const after = new X509Certificate(readFileSync(certFile));
    expect(after.fingerprint256).not.toBe(before.fingerprint256);
    const served = await httpsGet(world.httpsPort, domain, await pebbleRoot());
    expect(served).toMatchObject({ status: 200, body: "t2", issuer: expect.stringMatching(/Pebble Intermediate/) });
    expect(served.fingerprint).toBe(after.fingerprint256);
    // the account the deploy used was kept with the route, so a restarted agent can renew too
    expect(world.restartAgent().table.get(app)?.acme).toEqual({ directory: testAcme!.directory, email: "ops@deploybot.test" });
  });
});
