import { errorBody } from "@deploybot/protocol";
import type { z } from "zod";

/** The documented exit codes (apps/cli/README.md); scripts depend on them, so never renumber. */
export const ExitCode = {
  ok: 0,
  failed: 1,
  usage: 2,
  auth: 3,
  notFound: 4,
  unreachable: 5,
  api: 6,
  /** Ctrl-C while following: the job itself goes on */
  interrupted: 130,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The one error the CLI throws on purpose: main prints `message` and exits with `exitCode`. */
export class CliError extends Error {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
  ) {
    super(message);
    this.name = "CliError";
  }

  /** The HTTP status, when the error is an API answer (a 5xx is worth a retry while following). */
  httpStatus?: number;
  withStatus(status: number): this {
    this.httpStatus = status;
    return this;
  }
}

export const usageError = (message: string) => new CliError(ExitCode.usage, message);

/** What a call returns: the answer as the API sent it (for --json) and as the schema reads it. */
export interface ApiAnswer<T> {
  raw: unknown;
  data: T;
  status: number;
}

// Generous: a deploy POST resolves config and writes SQLite, never anything slow.
const REQUEST_TIMEOUT_MS = 30_000;
// A backup is copied and checked before its first byte is sent: minutes for a multi-GB database.
const DOWNLOAD_HEADERS_TIMEOUT_MS = 30 * 60_000;

export class ApiClient {
  readonly baseUrl: string;

  constructor(
    url: string,
    private readonly token: string,
    private readonly interrupt?: AbortSignal,
  ) {
    this.baseUrl = url.replace(/\/+$/, "");
  }

  get<S extends z.ZodType>(path: string, schema: S): Promise<ApiAnswer<z.infer<S>>> {
    return this.request("GET", path, schema);
  }

  post<S extends z.ZodType>(path: string, schema: S, body?: unknown): Promise<ApiAnswer<z.infer<S>>> {
    return this.request("POST", path, schema, body);
  }

  delete<S extends z.ZodType>(path: string, schema: S): Promise<ApiAnswer<z.infer<S>>> {
    return this.request("DELETE", path, schema);
  }

  /** A GET whose answer is bytes (a run's result file); errors are JSON like everywhere else. */
  async bytes(path: string): Promise<{ data: Buffer; headers: Headers }> {
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        headers: { authorization: `Bearer ${this.token}` },
        signal: this.interrupt ? AbortSignal.any([this.interrupt, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) : AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      if (this.interrupt?.aborted) throw new CliError(ExitCode.interrupted, "interrupted");
      throw new CliError(ExitCode.unreachable, `cannot reach the controller at ${this.baseUrl}: ${networkReason(err)}`);
    }
    const data = Buffer.from(await res.arrayBuffer());
    if (!res.ok) {
      let raw: unknown = null;
      try {
        raw = JSON.parse(data.toString("utf8"));
      } catch {
        // not JSON: apiError falls back to the HTTP status
      }
      throw apiError(res.status, raw, this.baseUrl);
    }
    return { data, headers: res.headers };
  }

  /**
   * A GET whose answer is a file too large to hold in memory (a database backup), streamed to
   * `write`. The controller prepares the whole file before it answers, so the wait for headers is
   * long; the body then has no time limit. Errors are JSON like everywhere else.
   */
  async download(path: string, write: (body: ReadableStream<Uint8Array>, headers: Headers) => Promise<void>): Promise<void> {
    let res: Response;
    const headersTimeout = new AbortController();
    const timer = setTimeout(() => headersTimeout.abort(new DOMException("timeout", "TimeoutError")), DOWNLOAD_HEADERS_TIMEOUT_MS);
    try {
      res = await fetch(this.baseUrl + path, {
        headers: { authorization: `Bearer ${this.token}` },
        signal: AbortSignal.any([headersTimeout.signal, ...(this.interrupt ? [this.interrupt] : [])]),
      });
    } catch (err) {
      if (this.interrupt?.aborted) throw new CliError(ExitCode.interrupted, "interrupted");
      throw new CliError(ExitCode.unreachable, `cannot reach the controller at ${this.baseUrl}: ${networkReason(err)}`);
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok || !res.body) throw await errorOf(res, this.baseUrl);
    await write(res.body, res.headers);
  }

  /**
   * Opens a Server-Sent Events stream. The 30 s limit covers only the answer's headers; the body
   * may stay open for hours. Errors come back as CliErrors, like `request`'s.
   */
  async stream(path: string, lastEventId: string | undefined, signal: AbortSignal): Promise<Response> {
    const headersTimeout = new AbortController();
    const timer = setTimeout(() => headersTimeout.abort(new DOMException("timeout", "TimeoutError")), REQUEST_TIMEOUT_MS);
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: "text/event-stream",
          ...(lastEventId === undefined ? {} : { "last-event-id": lastEventId }),
        },
        signal: AbortSignal.any([signal, headersTimeout.signal, ...(this.interrupt ? [this.interrupt] : [])]),
      });
    } catch (err) {
      if (this.interrupt?.aborted) throw new CliError(ExitCode.interrupted, "interrupted");
      const reason = headersTimeout.signal.aborted ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : networkReason(err);
      throw new CliError(ExitCode.unreachable, `cannot reach the controller at ${this.baseUrl}: ${reason}`);
    } finally {
      clearTimeout(timer);
    }
    if (!res.ok) throw await errorOf(res, this.baseUrl);
    if (!res.body || !(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      await res.body?.cancel();
      throw new CliError(ExitCode.api, `GET ${path} did not answer with an event stream (is ${this.baseUrl} a deploybot controller of this version?)`);
    }
    return res;
  }

  async request<S extends z.ZodType>(method: string, path: string, schema: S, body?: unknown): Promise<ApiAnswer<z.infer<S>>> {
    const url = this.baseUrl + path;
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: this.interrupt ? AbortSignal.any([this.interrupt, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]) : AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      if (this.interrupt?.aborted) throw new CliError(ExitCode.interrupted, "interrupted");
      throw new CliError(ExitCode.unreachable, `cannot reach the controller at ${this.baseUrl}: ${networkReason(err)}`);
    }

    const text = await res.text();
    let raw: unknown = null;
    if (text.length > 0) {
      try {
        raw = JSON.parse(text);
      } catch {
        throw new CliError(ExitCode.api, `${method} ${url} answered ${res.status} with a body that is not JSON (is ${this.baseUrl} a deploybot controller?)`);
      }
    }
    if (!res.ok) throw apiError(res.status, raw, this.baseUrl);

    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? issue.path.join(".") : "body";
      throw new CliError(ExitCode.api, `unexpected answer from ${method} ${path}: '${where}' ${issue?.message ?? "is invalid"} (controller and CLI versions differ?)`);
    }
    return { raw, data: parsed.data, status: res.status };
  }
}

/** The CliError for an answer that is not ok, read from its JSON error envelope when it has one. */
async function errorOf(res: Response, baseUrl: string): Promise<CliError> {
  const text = await res.text().catch(() => "");
  let raw: unknown = null;
  try {
    raw = JSON.parse(text);
  } catch {
    // not JSON: apiError falls back to the HTTP status
  }
  return apiError(res.status, raw, baseUrl);
}

export function apiError(status: number, raw: unknown, baseUrl: string): CliError {
  const parsed = errorBody.safeParse(raw);
  const detail = parsed.success ? `${parsed.data.error.code}: ${parsed.data.error.message}` : `HTTP ${status}`;
  if (status === 401) return new CliError(ExitCode.auth, `${detail} (token refused by ${baseUrl}; run 'deploybot login' or set DEPLOYBOT_TOKEN)`);
  if (status === 403) return new CliError(ExitCode.auth, detail);
  if (status === 404) return new CliError(ExitCode.notFound, detail);
  return new CliError(ExitCode.api, detail).withStatus(status);
}

/** fetch wraps the socket error in `cause`; that is where ECONNREFUSED and friends live. */
function networkReason(err: unknown): string {
  if (err instanceof Error && err.name === "TimeoutError") return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  if (cause?.code) return cause.code;
  if (cause?.message) return cause.message;
  return err instanceof Error ? err.message : String(err);
}
