import type { ErrorBody } from "@deploybot/protocol";

export class ControllerError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

/**
 * A network failure or 5xx: worth retrying. A 4xx is an answer, except "the first request with
 * this Idempotency-Key is still being answered" (a retry that overtook it): its answer comes later.
 */
export const isRetryable = (err: unknown) =>
  !(err instanceof ControllerError) || err.status >= 500 || err.status === 429 || (err.status === 409 && err.code === "idempotency_key_in_use");

/** The agent's only way out: JSON over HTTP to the controller, bearer token, bounded time. */
export class ControllerClient {
  token: string | undefined;

  constructor(private readonly baseUrl: string) {}

  post<T>(
    path: string,
    body: unknown,
    opts: { token?: string; timeoutMs?: number; signal?: AbortSignal; headers?: Record<string, string> } = {},
  ): Promise<T> {
    return this.send<T>("POST", path, { "content-type": "application/json", ...opts.headers }, JSON.stringify(body), opts);
  }

  /** Raw bytes (a run's result file), with headers of the caller's choosing. */
  put<T>(path: string, body: Buffer, headers: Record<string, string>, opts: { timeoutMs?: number } = {}): Promise<T> {
    return this.send<T>("PUT", path, { "content-type": "application/octet-stream", ...headers }, body, opts);
  }

  private async send<T>(
    method: string,
    path: string,
    headers: Record<string, string>,
    body: string | Buffer,
    opts: { token?: string; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers: { ...headers, authorization: `Bearer ${opts.token ?? this.token ?? ""}` },
        body: typeof body === "string" ? body : new Uint8Array(body),
        signal: opts.signal
          ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 15_000)])
          : AbortSignal.timeout(opts.timeoutMs ?? 15_000),
      });
    } catch (err) {
      throw new Error(`controller unreachable: ${(err as Error).message}`);
    }
    const text = await res.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new ControllerError(res.status, "bad_response", `controller answered ${res.status} with non-JSON`);
    }
    if (!res.ok) {
      const e = (json as Partial<ErrorBody>).error;
      throw new ControllerError(res.status, e?.code ?? "http_error", e?.message ?? `HTTP ${res.status}`, e?.details);
    }
    return json as T;
  }
}
