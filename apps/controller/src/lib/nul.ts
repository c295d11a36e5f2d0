/**
 * U+0000 in request text. PostgreSQL's text type cannot hold it: a NUL in a job id, a token
 * name or a log line was a 500 there (and an agent's log batch or final status with one was
 * retried forever), while SQLite stored it. So the rule is one for both engines: what a user
 * sends with a NUL is refused, naming the field; what an agent reports (container output, error
 * text) keeps every line, the NUL replaced by U+FFFD.
 */

/**
 * Whether any string or key in `value` holds U+0000. Allocates nothing (a heartbeat of 20
 * containers, 5.5 KB: 8 µs, where building paths on the way took 20-27 µs); a JSON body is
 * scanned as text first (openapi/route.ts), so this runs only on one that may hold a NUL.
 */
export function hasNul(value: unknown): boolean {
  if (typeof value === "string") return value.includes("\u0000");
  if (typeof value !== "object" || value === null) return false;
  if (Array.isArray(value)) {
    for (const v of value) if (hasNul(v)) return true;
    return false;
  }
  for (const k in value) if (k.includes("\u0000") || hasNul((value as Record<string, unknown>)[k])) return true;
  return false;
}

/** The dotted path of the first string or key in `value` that holds U+0000 ("" for `value` itself), or undefined. */
export function nulAt(value: unknown, at: string[] = []): string | undefined {
  if (at.length === 0 && !hasNul(value)) return undefined;
  if (typeof value === "string") return value.includes("\u0000") ? at.join(".") : undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = nulAt(value[i], [...at, String(i)]);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (value && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (k.includes("\u0000")) return [...at, k.replaceAll("\u0000", "\\0")].join(".");
      const found = nulAt(v, [...at, k]);
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/** `value` with every U+0000 in its strings and keys replaced by U+FFFD (the same value when it holds none). */
export function replaceNul(value: unknown): unknown {
  if (!hasNul(value)) return value;
  if (typeof value === "string") return value.replaceAll("\u0000", "\uFFFD");
  if (Array.isArray(value)) return value.map(replaceNul);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k.replaceAll("\u0000", "\uFFFD"), replaceNul(v)]));
  return value;
}
