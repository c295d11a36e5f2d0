/** A fetch reader of an SSE response that parses events itself, for tests of the streams. */
export type SseEvent = { id?: string; event: string; data: string; comment?: string };

/** A fetch reader of an SSE response that parses events itself, one at a time. */
export async function openStream(url: string, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const res = await fetch(url, { headers, signal: abort.signal });
  const queue: SseEvent[] = [];
  let buffer = "";
  let ended = false;
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const pump = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        for (let cut = buffer.indexOf("\n\n"); cut >= 0; cut = buffer.indexOf("\n\n")) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const ev: SseEvent = { event: "message", data: "" };
          const data: string[] = [];
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) ev.comment = line.slice(1).trim();
            else if (line.startsWith("data: ")) data.push(line.slice(6));
            else if (line.startsWith("event: ")) ev.event = line.slice(7);
            else if (line.startsWith("id: ")) ev.id = line.slice(4);
          }
          ev.data = data.join("\n");
          queue.push(ev);
        }
      }
    } catch {
      // aborted by the test
    } finally {
      ended = true;
    }
  })();
  /** Waits for the next event matching `want` (skipping others), or fails after `ms`. */
  const next = async (want: (e: SseEvent) => boolean = (e) => e.event !== "message" || e.comment === undefined, ms = 8000) => {
    const until = Date.now() + ms;
    for (;;) {
      const i = queue.findIndex(want);
      if (i >= 0) return queue.splice(0, i + 1).at(-1)!;
      if (ended || Date.now() > until) throw new Error(`no matching event (ended=${ended})`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const logs = async (n: number) => {
    const out: SseEvent[] = [];
    while (out.length < n) out.push(await next((e) => e.event === "log"));
    return out;
  };
  const close = async () => {
    abort.abort();
    await pump;
  };
  return { res, next, logs, close, queue, done: pump };
}

