import net from "node:net";

/**
 * One command on HAProxy's runtime API (the admin `stats socket`) or its master CLI: connect,
 * send the line, read until HAProxy closes. Commands are built by our own code from validated
 * names and addresses; a newline in an argument would start a second command, so it is refused.
 */
export function haproxyCommand(socketPath: string, command: string, timeoutMs = 5000): Promise<string> {
  if (/[\r\n]/.test(command)) return Promise.reject(new Error("a runtime API command is one line"));
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    let out = "";
    const timer = setTimeout(() => socket.destroy(new Error(`HAProxy did not answer '${command.split(" ")[0]}' within ${timeoutMs} ms`)), timeoutMs);
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      out += chunk;
    });
    socket.on("end", () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // Half-close after the command: HAProxy answers and closes (no interactive prompt).
    socket.end(`${command}\n`);
  });
}

/** Whether something answers on the socket. */
export async function socketAnswers(socketPath: string): Promise<boolean> {
  return haproxyCommand(socketPath, "show info", 2000).then(
    (out) => out.includes("Pid:"),
    () => false,
  );
}

/** `show info` as a key -> value map (Pid, Uptime_sec, ...). */
export async function showInfo(socketPath: string): Promise<Record<string, string>> {
  const out = await haproxyCommand(socketPath, "show info");
  const info: Record<string, string> = {};
  for (const line of out.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) info[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
  }
  return info;
}

export interface ServerStat {
  backend: string;
  server: string;
  /** current sessions on the server: requests being answered */
  sessions: number;
  /** UP, DOWN, MAINT, DRAIN, "no check" ... */
  status: string;
}

/** Per-server figures from `show stat` (servers only). */
export async function serverStats(socketPath: string, backend?: string): Promise<ServerStat[]> {
  const out = await haproxyCommand(socketPath, `show stat ${backend ?? "-1"} 4 -1`);
  const lines = out.split("\n").filter((l) => l.length > 0);
  const header = (lines[0] ?? "").replace(/^# /, "").split(",");
  const col = (name: string) => header.indexOf(name);
  const [px, sv, scur, status] = [col("pxname"), col("svname"), col("scur"), col("status")];
  return lines.slice(1).map((line) => {
    const f = line.split(",");
    return { backend: f[px] ?? "", server: f[sv] ?? "", sessions: Number(f[scur] ?? 0), status: f[status] ?? "" };
  });
}
