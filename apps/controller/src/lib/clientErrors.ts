import { maxHeaderSize } from "node:http";
import type { Duplex } from "node:stream";

/** The parser's refusals, as status line and error envelope. Anything else unparsable is a 400. */
const refusals: Record<string, [status: number, reason: string, code: string, message: string]> = {
  HPE_HEADER_OVERFLOW: [431, "Request Header Fields Too Large", "request_header_too_large", `the URL and headers are larger than ${maxHeaderSize} bytes`],
  ERR_HTTP_REQUEST_TIMEOUT: [408, "Request Timeout", "request_timeout", "the request was not received in time"],
};

/**
 * Requests Node's HTTP parser refuses (a URL over 16 KB, headers too large, not HTTP at all)
 * never reach the app, and Node answers them with an empty body. This answers them in the same
 * `{error:{code,message}}` envelope as every other error, then closes the connection.
 */
export function answerClientErrors(server: { on(event: "clientError", listener: (err: Error & { code?: string }, socket: Duplex) => void): unknown }) {
  server.on("clientError", (err, socket) => {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason, code, message] = refusals[err.code ?? ""] ?? [400, "Bad Request", "bad_request", "the request is not valid HTTP/1.1"];
    const body = JSON.stringify({ error: { code, message } });
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });
}
