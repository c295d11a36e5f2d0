import { randomBytes, webcrypto, X509Certificate } from "node:crypto";
import { writeFileSync } from "node:fs";
import * as x509 from "@peculiar/x509";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeDocker, freePort, uniqueName } from "../../../test/support/docker";
import { renewalDueAt } from "../src/proxy/certificates";
import { httpsGet, type ProxyWorld, proxyWorld, viaProxy } from "./proxyFixture";

const DAY = 86_400_000;
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const pem = async (key: CryptoKey) => `-----BEGIN PRIVATE KEY-----\n${Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key)).toString("base64")}\n-----END PRIVATE KEY-----\n`;

/**
 * A certificate as an ACME CA would have issued it 80 days ago for 90 days: still valid for 10,
 * but due for renewal since day 60. Returns the CA (to trust) and the agent's file contents.
 */
async function dueCertificate(domain: string): Promise<{ ca: string; file: string; fingerprint: string }> {
  const caKeys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const now = Date.now();
  const caCert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8).toString("hex"),
    name: "CN=test ACME CA",
    notBefore: new Date(now - 100 * DAY),
    notAfter: new Date(now + 100 * DAY),
    keys: caKeys,
    signingAlgorithm: ALG,
    extensions: [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)],
  });
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomBytes(8).toString("hex"),
    subject: `CN=${domain}`,
    issuer: caCert.subject,
    notBefore: new Date(now - 80 * DAY),
    notAfter: new Date(now + 10 * DAY),
    signingKey: caKeys.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: ALG,
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "dns", value: domain }]), new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth])],
  });
  const leaf = new X509Certificate(cert.toString("pem"));
  expect(renewalDueAt(new Date(leaf.validFrom), new Date(leaf.validTo)).getTime()).toBeLessThan(now);
  return { ca: caCert.toString("pem"), file: `${cert.toString("pem")}\n${caCert.toString("pem")}\n${await pem(keys.privateKey)}`, fingerprint: leaf.fingerprint256 };
}

describeDocker("a certificate due for renewal whose ACME order fails", () => {
  let world: ProxyWorld;
  let acme: { directory: string };
  const app = uniqueName("certdue");
  const domain = `${app}.deploybot.test`;

  beforeAll(async () => {
    world = await proxyWorld();
    // nothing listens there: every order fails at once
    acme = { directory: `https://127.0.0.1:${await freePort()}/dir` };
  });
  afterAll(async () => {
    await world?.cleanup();
  });

  it("is still served until it ends: by the deploy that tried to renew it, after a restart, and through the renewal check", async () => {
    const due = await dueCertificate(domain);
    writeFileSync(world.proxy.certs.certFile(app), due.file, { mode: 0o600 });

    const lines: string[] = [];
    const outcome = await world.deploy(app, "d1", { domains: [domain], tls: "auto", acme, onLog: (l) => lines.push(l) });
    expect(outcome).toMatchObject({ ok: true });
    // the deploy says what happened and until when the current certificate holds
    expect(lines.join("\n")).toMatch(/renewing the certificate for .* failed: .*; the current one is served until 20\d\d-/);
    expect(await httpsGet(world.httpsPort, domain, due.ca)).toMatchObject({ status: 200, body: "d1", fingerprint: due.fingerprint });
    expect(await viaProxy(world.httpPort, domain, "/x")).toMatchObject({ status: 308, location: `https://${domain}:${world.httpsPort}/x` });
    // the heartbeat's route report carries the certificate and why its renewal failed
    const validTo = new X509Certificate(due.file).validTo;
    expect((await world.proxy.routes()).find((r) => r.app === app)).toMatchObject({
      certificate: { issuer: "test ACME CA", validTo: new Date(validTo).toISOString() },
      certificateError: expect.stringContaining("does not answer: ECONNREFUSED"),
    });

    // an agent restart (HAProxy too) loads it again
    await world.proxy.stop();
    await world.restartAgent().converge();
    expect(await httpsGet(world.httpsPort, domain, due.ca)).toMatchObject({ status: 200, body: "d1", fingerprint: due.fingerprint });

    // the renewal check reports the failure and keeps serving it
    const renewal = await world.proxy.renewCertificates();
    expect(renewal.renewed).toEqual([]);
    expect(renewal.failed.map((f) => f.app)).toEqual([app]);
    expect(await httpsGet(world.httpsPort, domain, due.ca)).toMatchObject({ status: 200, body: "d1", fingerprint: due.fingerprint });
  });

  it("an app with no certificate yet fails its deploy at once, naming the ACME server and why", async () => {
    const fresh = uniqueName("certnone");
    const outcome = await world.deploy(fresh, "n1", { domains: [`${fresh}.deploybot.test`], tls: "auto", acme });
    expect(outcome).toMatchObject({ ok: false });
    // asked once, not after acme-client's 75 s of retries ending in "reading 'config'"
    expect(outcome.ok ? "" : outcome.error).toContain(`the ACME server ${acme.directory} does not answer: ECONNREFUSED`);
    const route = (await world.proxy.routes()).find((r) => r.app === fresh);
    expect(route?.certificate).toBeUndefined();
    expect(route?.certificateError).toContain("does not answer: ECONNREFUSED");
  });
});
