const MASK = "********";

/**
 * Replaces every known secret value in a line before it leaves the host. Values shorter than
 * four characters are not redacted: masking "1" or "on" would shred every log line.
 */
export class Redactor {
  private secrets: string[] = [];

  add(...values: (string | undefined)[]): void {
    for (const v of values) if (v && v.length >= 4 && !this.secrets.includes(v)) this.secrets.push(v);
    // longest first, so a secret containing another is masked whole
    this.secrets.sort((a, b) => b.length - a.length);
  }

  redact(line: string): string {
    let out = line;
    for (const s of this.secrets) if (out.includes(s)) out = out.split(s).join(MASK);
    return out;
  }
}
