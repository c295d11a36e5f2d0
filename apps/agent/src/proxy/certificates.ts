import { randomBytes, webcrypto, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { join } from "node:path";
import type { AcmeAccount } from "@deploybot/protocol";
import type * as X509 from "@peculiar/x509";

// Loaded on first use: together they add ~1.4 s to the agent's start on a busy 2-core host, and
// an agent must be back within three heartbeats after a restart. Most hosts never issue one.
let x509Module: Promise<typeof X509> | null = null;
const loadX509 = () =>
  (x509Module ??= import("@peculiar/x509").then((m) => {
    m.cryptoProvider.set(webcrypto as unknown as Crypto);
    return m;
  }));
const loadAcme = () => import("acme-client");

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 86_400_000;
/** A certificate is ordered again this long before its end (Let's Encrypt's 90-day ones at day 60). */
const RENEW_BEFORE_MS = 30 * DAY;

/**
 * When a certificate valid from `notBefore` to `notAfter` is due: 30 days before its end, or in
 * its last third when it lives shorter than 90 days (Let's Encrypt's 6-day certificates at
 * day 4), so a short-lived one is not renewed on every check.
 */
export function renewalDueAt(notBefore: Date, notAfter: Date): Date {
  const lifetime = notAfter.getTime() - notBefore.getTime();
  return new Date(notAfter.getTime() - Math.min(RENEW_BEFORE_MS, lifetime / 3));
}

/**
 * Asks the ACME directory once before an order, so an unreachable or wrong CA URL fails in
 * seconds with the reason, instead of after acme-client's 75 s of retries with a TypeError.
 */
export function checkAcmeDirectory(directory: string, ca?: Buffer, timeoutMs = 10_000): Promise<void> {
  const fail = (why: string) => new Error(`the ACME server ${directory} ${why} (DEPLOYBOT_ACME_CA on the controller)`);
  return new Promise((resolve, reject) => {
    const get = directory.startsWith("http:") ? http.get : https.get;
    const req = get(directory, { timeout: timeoutMs, ...(ca ? { ca } : {}) }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        if (body.length < 65_536) body += c;
      });
      res.on("end", () => {
        if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) > 299) return reject(fail(`answered HTTP ${res.statusCode}`));
        try {
          if (typeof (JSON.parse(body) as { newOrder?: unknown }).newOrder === "string") return resolve();
        } catch {
          // not JSON: below
        }
        reject(fail("answered, but not with an ACME directory"));
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on("error", (err: NodeJS.ErrnoException) => reject(fail(`does not answer: ${err.code ?? err.message}`)));
  });
}

/** A certificate file of the store and what a person wants to know of it. */
export interface HeldCertificate {
  file: string;
  /** the issuer's common name */
  issuer: string;
  validTo: Date;
  renewalDueAt: Date;
}

export interface ChallengeResponder {
  addChallenge(token: string, keyAuthorization: string): Promise<void>;
  removeChallenge(token: string): Promise<void>;
}

const pemKey = async (key: CryptoKey) =>
  `-----BEGIN PRIVATE KEY-----\n${Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key)).toString("base64").replace(/.{64}/g, "$&\n").replace(/\n?$/, "\n")}-----END PRIVATE KEY-----\n`;

function writeSecret(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text, { mode: 0o600 });
  renameSync(`${file}.tmp`, file);
}

/**
 * Certificates in the agent's state dir (`proxy/certs/<app>.pem`: chain + key, what HAProxy
 * loads), so a restart of the agent or the host serves the same certificate without asking the
 * CA again. `internal` certificates come from a CA this host keeps (`proxy/ca/`); `auto` ones
 * from ACME (http-01 answered by the proxy itself).
 */
export class CertificateStore {
  private readonly certsDir: string;
  private readonly caDir: string;

  constructor(
    dir: string,
    private readonly options: { acmeCaCertFile?: string } = {},
  ) {
    this.certsDir = join(dir, "certs");
    this.caDir = join(dir, "ca");
    mkdirSync(this.certsDir, { recursive: true, mode: 0o700 });
    mkdirSync(this.caDir, { recursive: true, mode: 0o700 });
  }

  certFile = (app: string): string => join(this.certsDir, `${app}.pem`);
  get defaultCertFile(): string {
    return join(this.certsDir, "default.pem");
  }
  get internalCaFile(): string {
    return join(this.caDir, "ca.pem");
  }

  /** The app's certificate file when it covers every domain and is not due for renewal at `now`. */
  usable(app: string, domains: string[], issuer?: "internal" | "acme", now = Date.now()): string | null {
    const held = this.held(app, domains, issuer);
    return held && now < held.renewalDueAt.getTime() ? held.file : null;
  }

  /**
   * The app's certificate when it covers every domain and has not ended at `now`, due or not:
   * what HAProxy keeps serving while a renewal has not succeeded yet (Let's Encrypt's 90-day
   * certificates leave 30 days of retries before a browser sees an error).
   */
  servable(app: string, domains: string[], issuer?: "internal" | "acme", now = Date.now()): HeldCertificate | null {
    const held = this.held(app, domains, issuer);
    return held && now < held.validTo.getTime() ? held : null;
  }

  private held(app: string, domains: string[], issuer?: "internal" | "acme"): HeldCertificate | null {
    const file = this.certFile(app);
    if (!existsSync(file)) return null;
    try {
      const cert = new X509Certificate(readFileSync(file));
      const names = (cert.subjectAltName ?? "").split(", ").map((n) => n.replace(/^DNS:/, ""));
      if (!domains.every((d) => names.includes(d))) return null;
      const internal = cert.issuer === this.internalCa()?.subject;
      if (issuer && (issuer === "internal") !== internal) return null;
      const validTo = new Date(cert.validTo);
      const issuerName = /^CN=(.*)$/m.exec(cert.issuer)?.[1] ?? cert.issuer;
      return { file, issuer: issuerName, validTo, renewalDueAt: renewalDueAt(new Date(cert.validFrom), validTo) };
    } catch {
      return null;
    }
  }

  /** The certificate HAProxy serves to names it has no certificate for (it needs one to bind). */
  async ensureDefault(): Promise<string> {
    if (!existsSync(this.defaultCertFile)) await this.issueInternal(["deploybot.invalid"], this.defaultCertFile);
    return this.defaultCertFile;
  }

  async internal(app: string, domains: string[], now = Date.now()): Promise<string> {
    return this.usable(app, domains, "internal", now) ?? (await this.issueInternal(domains, this.certFile(app)));
  }

  async acme(app: string, domains: string[], account: AcmeAccount, challenges: ChallengeResponder, now = Date.now()): Promise<string> {
    const existing = this.usable(app, domains, "acme", now);
    if (existing) return existing;
    const ca = this.options.acmeCaCertFile ? readFileSync(this.options.acmeCaCertFile) : undefined;
    await checkAcmeDirectory(account.directory, ca);
    const acme = await loadAcme();
    const client = new acme.Client({ directoryUrl: account.directory, accountKey: await this.accountKey(account.directory) });
    // A private ACME server (step-ca, Pebble) with its own TLS root.
    if (ca) acme.axios.defaults.httpsAgent = new https.Agent({ ca });
    const [key, csr] = await acme.crypto.createCsr({ commonName: domains[0], altNames: domains });
    const chain = await client
      .auto({
      csr,
      ...(account.email ? { email: account.email } : {}),
      termsOfServiceAgreed: true,
      challengePriority: ["http-01"],
      // The CA checks the challenge through the proxy; checking it ourselves first needs this
      // host's public DNS name to resolve here, which it need not.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        if (challenge.type === "http-01") await challenges.addChallenge(challenge.token, keyAuthorization);
      },
      challengeRemoveFn: async (_authz, challenge) => {
        if (challenge.type === "http-01") await challenges.removeChallenge(challenge.token);
      },
    })
      .catch((err: Error) => {
        // acme-client 5.4 retries a request that got no answer 5 times (75 s), then fails
        // reading the missing response (publishlab/node-acme-client#101): say what happened.
        if (err instanceof TypeError && /reading 'config'/.test(err.message)) throw new Error(`the ACME server ${account.directory} stopped answering during the order (no answer after 5 retries)`);
        throw err;
      });
    const file = this.certFile(app);
    writeSecret(file, `${chain.trim()}\n${key.toString().trim()}\n`);
    return file;
  }

  private async accountKey(directory: string): Promise<Buffer> {
    const acme = await loadAcme();
    const file = join(this.caDir, `acme-account-${Buffer.from(directory).toString("base64url").slice(0, 80)}.pem`);
    if (existsSync(file)) return readFileSync(file);
    const key = await acme.crypto.createPrivateEcdsaKey();
    writeSecret(file, key.toString());
    return key;
  }

  private internalCa(): X509Certificate | null {
    try {
      return new X509Certificate(readFileSync(this.internalCaFile));
    } catch {
      return null;
    }
  }

  private async loadOrCreateCa(): Promise<{ cert: X509.X509Certificate; key: CryptoKey }> {
    const x509 = await loadX509();
    const keyFile = join(this.caDir, "ca.key");
    if (existsSync(this.internalCaFile) && existsSync(keyFile)) {
      const der = Buffer.from(readFileSync(keyFile, "utf8").replace(/-----[^-]+-----|\s/g, ""), "base64");
      const key = await webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"]);
      return { cert: new x509.X509Certificate(readFileSync(this.internalCaFile, "utf8")), key };
    }
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomBytes(16).toString("hex"),
      name: "CN=deploybot internal CA",
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + 3650 * DAY),
      keys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    writeSecret(keyFile, await pemKey(keys.privateKey));
    writeSecret(this.internalCaFile, cert.toString("pem"));
    return { cert, key: keys.privateKey };
  }

  private async issueInternal(domains: string[], file: string): Promise<string> {
    const x509 = await loadX509();
    const ca = await this.loadOrCreateCa();
    const keys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomBytes(16).toString("hex"),
      subject: `CN=${domains[0]}`,
      issuer: ca.cert.subject,
      notBefore: new Date(Date.now() - DAY),
      notAfter: new Date(Date.now() + 365 * DAY),
      signingKey: ca.key,
      publicKey: keys.publicKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.SubjectAlternativeNameExtension(domains.map((d) => ({ type: "dns" as const, value: d }))),
        new x509.BasicConstraintsExtension(false),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
      ],
    });
    writeSecret(file, `${cert.toString("pem")}\n${ca.cert.toString("pem")}\n${await pemKey(keys.privateKey)}`);
    return file;
  }
}
