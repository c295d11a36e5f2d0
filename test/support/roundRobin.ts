import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "./docker";

export interface RoundRobin {
  url: string;
  logFile: string;
  stop(): Promise<void>;
}

/**
 * HAProxy (Debian's, installed by scripts/test-services.d/proxy.sh) in front of `backends`, each
 * request to the next controller in turn, as an operator would run it: health checks every 300 ms
 * take a dead controller out, and a request refused at connect is sent to another one (`retries`
 * with `redispatch`). Long-poll heartbeats need the long server timeout.
 */
export async function startRoundRobin(backends: string[]): Promise<RoundRobin> {
  const dir = mkdtempSync(join(tmpdir(), "deploybot-rr-"));
  const port = await freePort();
  const servers = backends.map((b, i) => `  server c${i} ${new URL(b).host} check`).join("\n");
  writeFileSync(
    join(dir, "haproxy.cfg"),
    `global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 120s
  timeout server 120s
  retries 3
  option redispatch
frontend controllers
  bind 127.0.0.1:${port}
  default_backend controllers
backend controllers
  balance roundrobin
  option httpchk GET /healthz
  default-server inter 300ms fall 2 rise 2
${servers}
`,
  );
  const logFile = join(dir, "haproxy.log");
  const out = createWriteStream(logFile);
  const binary = existsSync("/usr/sbin/haproxy") ? "/usr/sbin/haproxy" : "haproxy";
  const child: ChildProcess = spawn(binary, ["-db", "-f", join(dir, "haproxy.cfg")], { stdio: ["ignore", "pipe", "pipe"] });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`haproxy exited with ${child.exitCode}; see ${logFile}`);
    if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) break;
    if (i > 300) throw new Error(`haproxy did not answer in 30 s; see ${logFile}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    logFile,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
  };
}
