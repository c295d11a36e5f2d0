import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { deriveKey } from "./auth";

/**
 * AES-256-GCM under a key derived from DEPLOYBOT_SECRET_KEY for one purpose. `aad` binds a
 * sealed value to where it is stored: copied elsewhere, it will not open.
 */
export class Sealer {
  private readonly key: Buffer;

  constructor(secretKey: string, purpose: string) {
    this.key = Buffer.from(deriveKey(secretKey, purpose));
  }

  seal(plain: string, aad: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(aad));
    const data = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), data]).toString("base64");
  }

  open(sealed: string, aad: string): string {
    const raw = Buffer.from(sealed, "base64");
    const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(aad));
    decipher.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString("utf8");
  }
}
