import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { CertificateStore, renewalDueAt } from "../src/proxy/certificates";

const DAY = 86_400_000;
const at = (iso: string) => new Date(iso);

describe("when a certificate is renewed", () => {
  it("a 90-day certificate 30 days before its end", () => {
    expect(renewalDueAt(at("2026-01-01T00:00:00Z"), at("2026-04-01T00:00:00Z")).toISOString()).toBe("2026-03-02T00:00:00.000Z");
  });

  it("a short-lived one in its last third (6 days: after day 4; 1 hour: after 40 minutes)", () => {
    expect(renewalDueAt(at("2026-01-01T00:00:00Z"), at("2026-01-07T00:00:00Z")).toISOString()).toBe("2026-01-05T00:00:00.000Z");
    expect(renewalDueAt(at("2026-01-01T00:00:00Z"), at("2026-01-01T01:00:00Z")).toISOString()).toBe("2026-01-01T00:40:00.000Z");
  });

  it("a five-year one (Pebble's default) 30 days before its end", () => {
    expect(renewalDueAt(at("2026-01-01T00:00:00Z"), at("2031-01-01T00:00:00Z")).toISOString()).toBe("2030-12-02T00:00:00.000Z");
  });
});

describe("CertificateStore against a moved clock (tls: internal, no ACME server needed)", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), "deploybot-certs-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const store = new CertificateStore(dir);
  const domains = ["renew.internal.test"];

  it("keeps a certificate until it is due, then issues a new one; the new one is kept again", async () => {
    const file = await store.internal("renew", domains);
    const first = new X509Certificate(readFileSync(file));
    const due = renewalDueAt(new Date(first.validFrom), new Date(first.validTo)).getTime();
    expect(store.usable("renew", domains, "internal", due - DAY)).toBe(file);
    expect(await store.internal("renew", domains, due - DAY)).toBe(file);
    expect(new X509Certificate(readFileSync(file)).fingerprint256).toBe(first.fingerprint256);

    expect(store.usable("renew", domains, "internal", due)).toBeNull();
    await store.internal("renew", domains, due);
    const second = new X509Certificate(readFileSync(file));
    expect(second.fingerprint256).not.toBe(first.fingerprint256);
    expect(second.subjectAltName).toBe("DNS:renew.internal.test");
    // issued from the real clock: valid a year from today, so kept from now on
    expect(Date.parse(second.validTo)).toBeGreaterThan(Date.now() + 364 * DAY);
    expect(store.usable("renew", domains, "internal")).toBe(file);
  });

  it("a certificate that does not cover every domain is not usable, whatever the time", async () => {
    expect(store.usable("renew", [...domains, "other.internal.test"], "internal")).toBeNull();
  });
});
