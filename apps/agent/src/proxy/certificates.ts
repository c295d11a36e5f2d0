import { randomBytes, webcrypto, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
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
    const file = this.certFile(app);
    if (!existsSync(file)) return null;
    try {
      const cert = new X509Certificate(readFileSync(file));
      const names = (cert.subjectAltName ?? "").split(", ").map((n) => n.replace(/^DNS:/, ""));
      if (!domains.every((d) => names.includes(d))) return null;
      if (now >= renewalDueAt(new Date(cert.validFrom), new Date(cert.validTo)).getTime()) return null;
      const internal = cert.issuer === this.internalCa()?.subject;
      if (issuer && (issuer === "internal") !== internal) return null;
      return file;
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
    const acme = await loadAcme();
    const client = new acme.Client({ directoryUrl: account.directory, accountKey: await this.accountKey(account.directory) });
    if (this.options.acmeCaCertFile) {
      // A private ACME server (step-ca, Pebble) with its own TLS root.
      acme.axios.defaults.httpsAgent = new https.Agent({ ca: readFileSync(this.options.acmeCaCertFile) });
    }
    const [key, csr] = await acme.crypto.createCsr({ commonName: domains[0], altNames: domains });
    const chain = await client.auto({
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
