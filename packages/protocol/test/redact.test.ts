import { describe, expect, test } from "vitest";
import { REDACTED, Redactor } from "../src/redact";

const SECRET = "S3CR3T-VALUE-42";

describe("Redactor", () => {
  const r = new Redactor(SECRET, "pw", undefined);

  test("masks the raw value and leaves short values alone", () => {
    expect(r.redact(`API_KEY=${SECRET} mode=pw`)).toBe(`API_KEY=${REDACTED} mode=pw`);
  });

  test("masks base64 of the value at every alignment inside longer base64 (env | base64)", () => {
    for (const prefix of ["", "A", "AB", "API_KEY=", "PATH=/usr/bin\nAPI_KEY="]) {
      const encoded = Buffer.from(`${prefix}${SECRET}\nHOME=/root\n`).toString("base64");
      const out = r.redact(encoded);
      expect(out).toContain(REDACTED);
      // nothing that decodes back to the secret survives
      expect(Buffer.from(out.replaceAll(REDACTED, ""), "base64").toString()).not.toContain(SECRET);
    }
    expect(r.redact(Buffer.from(SECRET).toString("base64url"))).toBe(REDACTED);
  });

  test("masks hex, URL and form encoding, and JSON escapes", () => {
    const odd = new Redactor('p@ss "word" & more');
    expect(r.redact(Buffer.from(SECRET).toString("hex"))).toBe(REDACTED);
    expect(r.redact(Buffer.from(SECRET).toString("hex").toUpperCase())).toBe(REDACTED);
    expect(odd.redact(`url=https://x/?p=${encodeURIComponent('p@ss "word" & more')}`)).toBe(`url=https://x/?p=${REDACTED}`);
    expect(odd.redact(`form=${new URLSearchParams({ a: 'p@ss "word" & more' }).toString().slice(2)}`)).toBe(`form=${REDACTED}`);
    expect(odd.redact(JSON.stringify({ v: 'p@ss "word" & more' }))).toBe(`{"v":"${REDACTED}"}`);
  });

  test("masks a value split across lines of one text, keeping the line breaks", () => {
    const text = `last log lines:\nAPI_KEY=S3CR3T-\nVALUE-42\ndone`;
    const out = r.redact(text);
    expect(out.replaceAll("\n", "")).not.toContain("S3CR3T");
    expect(out).not.toContain("VALUE-42");
    expect(out.split("\n")).toHaveLength(4);
    const wrapped = Buffer.from(`API_KEY=${SECRET}`).toString("base64").replace(/(.{7})/g, "$1\n");
    expect(r.redact(wrapped).replaceAll("\n", "")).toContain(REDACTED);
  });

  test("redacts every string and key of a result object", () => {
    const result = { lastLogLines: [`API_KEY=${SECRET}`], nested: { [SECRET]: 1, n: 5 } };
    expect(new Redactor(SECRET).redactDeep(result)).toEqual({ lastLogLines: [`API_KEY=${REDACTED}`], nested: { [REDACTED]: 1, n: 5 } });
  });

  test("the longer of two overlapping secrets is masked whole", () => {
    const two = new Redactor("abcd", "abcdefgh");
    expect(two.redact("x abcdefgh y abcd")).toBe(`x ${REDACTED} y ${REDACTED}`);
  });
});
