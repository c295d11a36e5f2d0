export const REDACTED = "********";

/**
 * Shortest secret that is masked: masking "1" or "on" would shred every line. Encoded forms
 * must be at least as long, so a 4-character secret is still masked raw but its base64 core
 * (2 characters at some alignments) is not.
 */
const MIN_SECRET = 4;
const MIN_ENCODED = 6;

const base64 = (b: Buffer) => b.toString("base64");
const base64url = (b: Buffer) => b.toString("base64url");

/**
 * The stable middle of a value's base64 inside any longer base64 text, for each of the three
 * byte alignments the value can start at: the characters that depend on neighbouring bytes
 * are cut off both ends (a prefix of k filler bytes is encoded, then its own characters dropped).
 */
function base64Cores(value: Buffer, encode: (b: Buffer) => string): string[] {
  const cores: string[] = [];
  for (let k = 0; k < 3; k++) {
    const text = encode(Buffer.concat([Buffer.alloc(k, 0), value])).replace(/=+$/, "");
    const start = k === 0 ? 0 : Math.ceil((k * 4) / 3);
    const total = k + value.length;
    // characters fully determined by the value's bytes: complete 3-byte groups only
    const end = Math.floor(total / 3) * 4;
    const core = text.slice(start, end);
    if (core.length >= MIN_ENCODED) cores.push(core);
    // the value alone, padded or not, as `echo -n value | base64` prints it
    if (k === 0) {
      const whole = encode(value);
      if (whole.length >= MIN_ENCODED) cores.push(whole, whole.replace(/=+$/, ""));
    }
  }
  return cores;
}

/** Every spelling of a secret we mask: raw, JSON-escaped, URL/form-encoded, hex, base64(url). */
export function secretVariants(value: string): string[] {
  if (value.length < MIN_SECRET) return [];
  const bytes = Buffer.from(value, "utf8");
  const hex = bytes.toString("hex");
  const out = [
    value,
    JSON.stringify(value).slice(1, -1),
    encodeURIComponent(value),
    new URLSearchParams({ v: value }).toString().slice(2),
    hex,
    hex.toUpperCase(),
    ...base64Cores(bytes, base64),
    ...base64Cores(bytes, base64url),
  ];
  return [...new Set(out)].filter((v, i) => i === 0 || v.length >= MIN_ENCODED);
}

/**
 * Masks known secret values in text before it leaves (agent) or is stored (controller). Caught:
 * the raw value, its JSON escape, URL and form encoding, hex (either case), base64 and base64url
 * at any alignment inside longer base64 (so `env | base64` is caught), and any of these split
 * across lines of one multi-line string. Not caught: other encodings (gzip, rot13, a value
 * reversed or spelt with separators), a value split across two separately sent log lines, and
 * values shorter than 4 characters.
 */
export class Redactor {
  private values = new Set<string>();
  private variants: string[] = [];

  constructor(...values: (string | undefined | null)[]) {
    this.add(...values);
  }

  get size(): number {
    return this.values.size;
  }

  add(...values: (string | undefined | null)[]): void {
    let changed = false;
    for (const v of values) {
      if (!v || v.length < MIN_SECRET || this.values.has(v)) continue;
      this.values.add(v);
      changed = true;
    }
    if (!changed) return;
    const all = new Set<string>();
    for (const v of this.values) for (const variant of secretVariants(v)) all.add(variant);
    // longest first, so a secret containing another is masked whole
    this.variants = [...all].sort((a, b) => b.length - a.length);
  }

  redact(text: string): string {
    if (this.variants.length === 0 || text.length < MIN_SECRET) return text;
    const mask = new Uint8Array(text.length);
    let hit = this.mark(text, null, mask);
    if (text.includes("\n")) {
      // a value wrapped over lines (base64 at 76 columns, a terminal's wrap): search the text
      // with its line breaks removed and map each hit back to the original characters
      const map: number[] = [];
      let flat = "";
      for (let i = 0; i < text.length; i++) {
        const ch = text[i]!;
        if (ch === "\n" || ch === "\r") continue;
        map.push(i);
        flat += ch;
      }
      hit = this.mark(flat, map, mask) || hit;
    }
    if (!hit) return text;
    let out = "";
    for (let i = 0; i < text.length; i++) {
      if (!mask[i]) out += text[i];
      else if (i === 0 || !mask[i - 1]) out += REDACTED;
    }
    return out;
  }

  /** Redacts every string (and key) in a JSON-like value. */
  redactDeep<T>(value: T): T {
    if (typeof value === "string") return this.redact(value) as T;
    if (Array.isArray(value)) return value.map((v) => this.redactDeep(v)) as T;
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [this.redact(k), this.redactDeep(v)])) as T;
    }
    return value;
  }

  private mark(text: string, map: number[] | null, mask: Uint8Array): boolean {
    let hit = false;
    for (const v of this.variants) {
      for (let at = text.indexOf(v); at !== -1; at = text.indexOf(v, at + 1)) {
        hit = true;
        for (let i = at; i < at + v.length; i++) {
          mask[map ? map[i]! : i] = 1;
        }
      }
    }
    return hit;
  }
}
