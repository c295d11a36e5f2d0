import { spawn } from "node:child_process";

/** `promtool check metrics` (Debian package prometheus) reads the exposition on stdin; it exits non-zero on any lint problem. */
export function promtoolCheck(text: string): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    const p = spawn("promtool", ["check", "metrics"]);
    let output = "";
    p.stdout.on("data", (d) => (output += d));
    p.stderr.on("data", (d) => (output += d));
    p.on("close", (code) => resolve({ ok: code === 0, output }));
    p.stdin.end(text);
  });
}
