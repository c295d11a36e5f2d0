import { randomUUID } from "node:crypto";
import { errorBody, FAILOVER_STATUSES, parseControllerUrls } from "@deploybot/protocol";
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
// Socket errors that mean the request never left: safe to send elsewhere whatever it is.
const NOT_SENT = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "UND_ERR_CONNECT_TIMEOUT"]);
// Every URL is tried in turn, twice over with a pause between: a controller restarting behind
// one load-balanced URL (a few hundred ms of 502/503) is waited out instead of failing the command.
const ROUNDS = 2;
const ROUND_PAUSE_MS = 1_000;

interface OpenOptions {
  /** may be sent again to another controller after it may have arrived (GET, keyed POST) */
  safe: boolean;
  /** for the answer's headers; the body has its own limits */
  headersTimeoutMs: number;
  signal?: AbortSignal;
}

export class ApiClient {
  readonly urls: string[];
  private current = 0;
  /** the URL whose answer was last seen; a switch is told once, when another one answers */
  private answering: string | undefined;

  constructor(
    url: string | string[],
    private readonly token: string,
    private readonly interrupt?: AbortSignal,
    /** told once per switch of controller (main prints it on stderr) */
    private readonly onSwitch: (change: { from: string; to: string; reason: string }) => void = () => {},
  ) {
    this.urls = typeof url === "string" ? parseControllerUrls(url) : url.map((u) => u.replace(/\/+$/, ""));
    if (this.urls.length === 0) throw new CliError(ExitCode.usage, "no controller URL");
  }

  /** The controller calls go to now (the first URL until one fails). */
  get baseUrl(): string {
    return this.urls[this.current]!;
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

  /**
   * Sends one call, with failover: a URL that does not connect, or (for a call that is safe to
   * repeat) does not answer in time or answers 502/503/504, passes it to the next URL. A call
   * that is not safe to repeat (DELETE) moves on only when it never left. The first answer that
   * is not a failover reason is returned whatever its status; none at all is exit 5.
   */
  private async open(path: string, init: RequestInit, opts: OpenOptions): Promise<Response> {
    const reasons: { url: string; reason: string }[] = [];
    for (let attempt = 0; attempt < ROUNDS * this.urls.length; attempt++) {
      if (attempt > 0 && attempt % this.urls.length === 0) await pause(ROUND_PAUSE_MS, this.interrupt);
      const url = this.baseUrl;
      const headersTimeout = new AbortController();
      const timer = setTimeout(() => headersTimeout.abort(new DOMException("timeout", "TimeoutError")), opts.headersTimeoutMs);
      let reason: string;
      try {
        const res = await fetch(url + path, {
          ...init,
          headers: { authorization: `Bearer ${this.token}`, ...(init.headers as Record<string, string>) },
          signal: AbortSignal.any([headersTimeout.signal, ...(opts.signal ? [opts.signal] : []), ...(this.interrupt ? [this.interrupt] : [])]),
        });
        if (!(opts.safe && FAILOVER_STATUSES.has(res.status))) {
          this.answered(url, reasons.at(-1));
          return res;
        }
        await res.body?.cancel();
        reason = `answered ${res.status}`;
      } catch (err) {
        if (this.interrupt?.aborted) throw new CliError(ExitCode.interrupted, "interrupted");
        if (opts.signal?.aborted) throw err;
        reason = headersTimeout.signal.aborted ? `no answer within ${Math.round(opts.headersTimeoutMs / 1000)} s` : networkReason(err);
        if (!opts.safe && !NOT_SENT.has(reason)) throw unreachable([{ url, reason }]);
      } finally {
        clearTimeout(timer);
      }
      reasons.push({ url, reason });
      this.current = (this.current + 1) % this.urls.length;
    }
    // every URL failed, twice: no controller can answer now (a 503 is a proxy saying just that)
    throw unreachable(reasons);
  }

  private answered(url: string, failure: { url: string; reason: string } | undefined) {
    if (failure && this.answering !== url) this.onSwitch({ from: failure.url, to: url, reason: failure.reason });
    this.answering = url;
  }

  /** A GET whose answer is bytes (a run's result file); errors are JSON like everywhere else. */
  async bytes(path: string): Promise<{ data: Buffer; headers: Headers }> {
    const res = await this.open(path, {}, { safe: true, headersTimeoutMs: REQUEST_TIMEOUT_MS });
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
    const res = await this.open(path, {}, { safe: true, headersTimeoutMs: DOWNLOAD_HEADERS_TIMEOUT_MS });
    if (!res.ok || !res.body) throw await errorOf(res, this.baseUrl);
    await write(res.body, res.headers);
  }

  /**
   * Opens a Server-Sent Events stream. The 30 s limit covers only the answer's headers; the body
   * may stay open for hours. Errors come back as CliErrors, like `request`'s. With several URLs a
   * reconnect (with Last-Event-ID) goes to whichever controller answers.
   */
  async stream(path: string, lastEventId: string | undefined, signal: AbortSignal): Promise<Response> {
    const res = await this.open(
      path,
      { headers: { accept: "text/event-stream", ...(lastEventId === undefined ? {} : { "last-event-id": lastEventId }) } },
      { safe: true, headersTimeoutMs: REQUEST_TIMEOUT_MS, signal },
    );
    if (!res.ok) throw await errorOf(res, this.baseUrl);
    if (!res.body || !(res.headers.get("content-type") ?? "").startsWith("text/event-stream")) {
      await res.body?.cancel();
      throw new CliError(ExitCode.api, `GET ${path} did not answer with an event stream (is ${this.baseUrl} a deploybot controller of this version?)`);
    }
    return res;
  }

  /**
   * A JSON call. Every POST carries a fresh Idempotency-Key, the same on each controller it is
   * tried on: a retry after a lost answer is replayed by the controller, not done twice.
   */
  async request<S extends z.ZodType>(method: string, path: string, schema: S, body?: unknown): Promise<ApiAnswer<z.infer<S>>> {
    const keyed = method === "POST";
    const res = await this.open(
      path,
      {
        method,
        headers: {
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
          ...(keyed ? { "idempotency-key": `cli-${randomUUID()}` } : {}),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      },
      { safe: method === "GET" || keyed, headersTimeoutMs: REQUEST_TIMEOUT_MS },
    );
    const url = this.baseUrl + path;

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

function unreachable(reasons: { url: string; reason: string }[]): CliError {
  const distinct = [...new Set(reasons.map((r) => `${r.url}: ${r.reason}`))];
  return new CliError(
    ExitCode.unreachable,
    distinct.length === 1 ? `cannot reach the controller at ${distinct[0]}` : `cannot reach any controller (${distinct.join("; ")})`,
  );
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CliError(ExitCode.interrupted, "interrupted"));
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(new CliError(ExitCode.interrupted, "interrupted"));
      },
      { once: true },
    );
  });
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
  // the controller refused a value the user gave (an app name, a ref, a cursor): a usage error,
  // as when the CLI itself finds the value wrong
  if (status === 400) return new CliError(ExitCode.usage, detail).withStatus(status);
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
