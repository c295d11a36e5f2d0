import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "pino";
import type { ZodError } from "zod";

/** The one error type routes and services throw for expected failures. */
export class ApiError extends HTTPException {
  constructor(
    status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(status, { message });
  }
}

export const notFound = (what: string, id: string) => new ApiError(404, "not_found", `${what} '${id}' does not exist`);

type Issue = { path: PropertyKey[]; message: string; code?: string; errors?: Issue[][]; issues?: Issue[] };

/** A union failure reports the branch that came closest (fewest issues), so the message names the real field. */
function closestIssues(issues: Issue[], prefix: PropertyKey[] = []): Issue[] {
  return issues.flatMap((issue) => {
    const path = [...prefix, ...issue.path];
    if (issue.code === "invalid_union" && issue.errors && issue.errors.length > 0) {
      const best = [...issue.errors].sort((a, b) => a.length - b.length)[0]!;
      return closestIssues(best, path);
    }
    // a bad record key carries the key's own reason inside
    const nested = issue.issues?.[0]?.message;
    return [{ ...issue, path, message: nested ?? issue.message }];
  });
}

export function describeZodError(error: ZodError): { message: string; details: unknown } {
  const issues = closestIssues(error.issues as Issue[]).map((i) => ({ path: i.path.map(String).join("."), message: i.message }));
  const first = issues[0];
  const where = first?.path ? `'${first.path}'` : "body";
  return { message: `invalid ${where}: ${first?.message ?? "invalid input"}`, details: issues };
}

export function errorResponse(c: Context, status: ContentfulStatusCode, code: string, message: string, details?: unknown) {
  return c.json({ error: details === undefined ? { code, message } : { code, message, details } }, status);
}

/** Turns anything thrown into `{error:{code,message}}`; unexpected errors are logged once, never shown. */
export function handleError(logger: Logger) {
  return (err: Error, c: Context) => {
    if (err instanceof ApiError) {
      // a refusal for load says when to come back
      const retryAfter = (err.details as { retryAfterSeconds?: unknown } | undefined)?.retryAfterSeconds;
      if (typeof retryAfter === "number") c.header("retry-after", String(retryAfter));
      return errorResponse(c, err.status, err.code, err.message, err.details);
    }
    // hono's JSON validator refuses an unparsable body before our schemas see it
    if (err instanceof HTTPException && err.status === 400 && err.message.startsWith("Malformed JSON")) {
      return errorResponse(c, 400, "invalid_body", "the body is not valid JSON");
    }
    if (err instanceof HTTPException) {
      const status = err.status;
      const code = status === 413 ? "payload_too_large" : status === 401 ? "unauthorized" : "http_error";
      return errorResponse(c, status, code, err.message || "request refused");
    }
    const code = (err as { code?: string }).code ?? "";
    if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") {
      logger.error({ err, method: c.req.method, path: c.req.path }, "database corrupt");
      return errorResponse(c, 503, "database_corrupt", "the database is corrupt; restore it from a backup");
    }
    logger.error({ err, method: c.req.method, path: c.req.path }, "unhandled error");
    return errorResponse(c, 500, "internal", "internal error");
  };
}
