/** Full-jitter exponential backoff: attempt 0 waits up to `baseMs`, doubling to at most `capMs`. */
export function backoffMs(attempt: number, baseMs = 500, capMs = 30_000): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** attempt);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
