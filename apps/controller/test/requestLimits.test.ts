import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ADMIN, startTestController } from "./server";

type Controller = Awaited<ReturnType<typeof startTestController>>;
let ctl: Controller;

beforeAll(async () => {
  ctl = await startTestController();
});
afterAll(async () => {
  await ctl?.stop();
});

/** One raw request on its own connection; the whole answer as text. */
function raw(request: string): Promise<string> {
  const { port } = new URL(ctl.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1", () => socket.write(request));
    let answer = "";
    socket.setEncoding("utf8");
    socket.on("data", (d) => (answer += d));
    socket.on("end", () => resolve(answer));
    socket.on("error", reject);
  });
}

describe("requests the HTTP parser refuses", () => {
  test("a URL over 16 KB is a 431 in the error envelope, and the controller keeps serving", async () => {
    const res = await fetch(`${ctl.url}/v1/jobs?app=${"a".repeat(17 * 1024)}`, { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(431);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual({ error: { code: "request_header_too_large", message: expect.stringContaining("16384 bytes") } });
    expect((await ctl.call("GET", "/v1/jobs", ADMIN)).status).toBe(200);
  });

  test("something that is not HTTP is a 400 in the error envelope", async () => {
    const answer = await raw("NOT HTTP AT ALL\r\n\r\n");
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4));
    expect(body.error.code).toBe("bad_request");
  });
});
