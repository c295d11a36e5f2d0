import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";

interface Holder {
  pid: number;
  /** the kernel's boot id and the process's start time: a pid reused after a crash or a reboot is not the holder */
  boot: string | null;
  started: string | null;
}

const readOr = (file: string): string | null => {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    return null;
  }
};

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); null off Linux or when gone. */
function startTime(pid: number): string | null {
  const stat = readOr(`/proc/${pid}/stat`);
  if (!stat) return null;
  // the command name (field 2) may hold spaces and parentheses: count from the last ")"
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
}

const me = (): Holder => ({ pid: process.pid, boot: readOr("/proc/sys/kernel/random/boot_id"), started: startTime(process.pid) });

function alive(holder: Holder): boolean {
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  const now = me();
  if (holder.boot && now.boot && holder.boot !== now.boot) return false;
  if (holder.started && startTime(holder.pid) !== holder.started) return false;
  return true;
}

export class StateDirLocked extends Error {}

/**
 * One agent per state dir: two would both take jobs under one identity and write one job.json,
 * spool and desired state. The lock is a file created exclusively with the holder's pid; a lock
 * whose holder is gone (kill -9, a reboot: the pid and its start time no longer match) is taken
 * over. Released when the process exits.
 */
export function lockStateDir(stateDir: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const file = join(stateDir, "agent.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, JSON.stringify(me()));
      closeSync(fd);
      process.on("exit", () => {
        if (readOr(file)?.includes(`"pid":${process.pid},`)) rmSync(file, { force: true });
      });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    let holder: Holder | null = null;
    try {
      holder = JSON.parse(readOr(file) ?? "null") as Holder | null;
    } catch {
      // a lock torn by a crash mid-write: nobody holds it
    }
    if (holder && holder.pid !== process.pid && alive(holder)) {
      throw new StateDirLocked(`another agent (pid ${holder.pid}) is running on the state dir ${stateDir}; stop it first, or give this one its own DEPLOYBOT_STATE_DIR`);
    }
    rmSync(file, { force: true });
  }
  throw new StateDirLocked(`could not take the lock ${file}: another agent is starting on the same state dir`);
}
