import { errorBody } from "@deploybot/protocol";
import { describe, expect } from "vitest";
import { ADMIN, JOIN, test } from "./fixture";

describe("errors", () => {
  test("malformed JSON is a 400 with the error envelope", async ({ h }) => {
    const res = await h.call("POST", "/v1/jobs", { token: ADMIN, body: "{not json" });
    expect(res.status).toBe(400);
    expect(errorBody.parse(await res.json()).error).toEqual({ code: "invalid_body", message: "the body is not valid JSON" });
  });

  test("a schema violation is a 400 naming the field", async ({ h }) => {
    const res = await h.call("POST", "/v1/jobs", { token: ADMIN, body: { repo: "acme/web", ref: "main", host: 42 } });
    expect(res.status).toBe(400);
    const { error } = errorBody.parse(await res.json());
    expect(error.message).toContain("'host'");
  });

  test("a body over 1 MiB is a 413", async ({ h }) => {
    const big = { hostname: "web-1", version: "x".repeat(1024 * 1024 + 10) };
    const res = await h.call("POST", "/v1/agents/register", { token: JOIN, body: big });
    expect(res.status).toBe(413);
    expect(errorBody.parse(await res.json()).error.code).toBe("payload_too_large");
  });

  test("a declared length over 1 MiB is refused before the body is read", async ({ h }) => {
    const res = await h.call("POST", "/v1/jobs", { token: ADMIN, body: "{}", headers: { "content-length": String(2 * 1024 * 1024) } });
    expect(res.status).toBe(413);
  });

  test("unknown routes are a 404 with the envelope", async ({ h }) => {
    const res = await h.call("GET", "/v1/nope", { token: ADMIN });
    expect(res.status).toBe(404);
    expect(errorBody.parse(await res.json()).error.code).toBe("not_found");
  });

  test("garbage never leaks a stack trace and never logs a token or a body", async ({ h }) => {
    for (const body of ["[]", "null", '{"repo":{}}', "\u0000", '"x"', "1e999"]) {
      const res = await h.call("POST", "/v1/jobs", { token: ADMIN, body });
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      const text = await res.text();
      expect(text).not.toMatch(/at .*\.ts:\d+/);
      errorBody.parse(JSON.parse(text));
    }
    expect((await h.call("GET", "/healthz")).status).toBe(200);
    const logs = h.logLines.join("\n");
    expect(logs).not.toContain(ADMIN);
    expect(logs).not.toContain("repo");
    expect(logs).toContain('"route":"/v1/jobs"');
  });
});
