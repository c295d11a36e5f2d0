import { randomBytes } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { Worker } from "node:worker_threads";
import type { Logger } from "pino";
import { ApiError } from "../lib/errors";

export interface BackupFile {
  path: string;
  bytes: number;
  /** wall time of copy + integrity check + fsync, in the worker */
  ms: number;
}

/** backup-20261127T031500Z.db: names sort by time, and start with the `backup-` openDb treats as a sign of an installation */
const BACKUP_NAME = /^backup-\d{8}T\d{6}(\d{3})?Z\.db$/;
const TEMP_MARK = ".tmp-";

const driverPath = createRequire(import.meta.url).resolve("better-sqlite3");

/*
 * Runs in a worker thread on its own connection. `VACUUM INTO` is one read transaction: in WAL
 * mode it holds no lock a writer waits for, so requests keep writing while it copies (a snapshot
 * as of its start). The backup API on the controller's own connection would instead copy on the
 * event loop between requests, and on a second connection it restarts whenever anyone writes.
 * Plain JS evaluated in the worker: no TypeScript loader is needed there.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const fs = require("node:fs");
const Database = require(workerData.driver);
const started = Date.now();
try {
  const source = new Database(workerData.source, { readonly: true, fileMustExist: true });
  try {
    source.pragma("busy_timeout = 5000");
    source.prepare("VACUUM INTO ?").run(workerData.temp);
  } finally {
    source.close();
  }
  const copy = new Database(workerData.temp, { fileMustExist: true });
  let problems;
  try {
    problems = copy.pragma("integrity_check").map((r) => r.integrity_check).filter((r) => r !== "ok");
    // a copy in rollback-journal mode is one self-contained file; the controller turns WAL back on when it opens it
    copy.pragma("journal_mode = DELETE");
  } finally {
    copy.close();
  }
  const fd = fs.openSync(workerData.temp, "r+");
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
  parentPort.postMessage({ ok: problems.length === 0, problems: problems.slice(0, 10), ms: Date.now() - started });
} catch (err) {
  parentPort.postMessage({ ok: false, problems: [String(err && err.message || err)], ms: Date.now() - started });
}
`;

interface WorkerAnswer {
  ok: boolean;
  problems: string[];
  ms: number;
}

function copyInWorker(source: string, temp: string): Promise<WorkerAnswer> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { driver: driverPath, source, temp } });
    let answer: WorkerAnswer | undefined;
    worker.once("message", (m: WorkerAnswer) => {
      answer = m;
    });
    worker.once("error", reject);
    worker.once("exit", (code) => (answer ? resolve(answer) : reject(new Error(`backup worker exited with code ${code}`))));
  });
}

export class BackupError extends Error {}

/**
 * Consistent copies of the SQLite database while the controller runs: taken off the event loop,
 * checked with `PRAGMA integrity_check` before they are kept, and written atomically (a temp file
 * next to the target, fsynced, renamed, the directory fsynced), so a backup file either is whole
 * and checked or does not exist.
 */
const ON_POSTGRES = "the controller runs on PostgreSQL (DEPLOYBOT_DATABASE_URL): back the database up with PostgreSQL's own tools (pg_dump)";

export class DatabaseBackups {
  private queue: Promise<unknown> = Promise.resolve();
  /** for /metrics: a failing periodic backup must be something an operator can alert on */
  readonly stats = { ok: 0, failed: 0, lastSuccessAt: null as number | null };

  /** `dbPath` null: the controller runs on PostgreSQL, which is backed up with its own tools (pg_dump) */
  constructor(
    private readonly dbPath: string | null,
    private readonly logger: Logger,
  ) {}

  /** One backup at a time: a periodic backup and an operator's request wait for each other. */
  backupTo(dest: string): Promise<BackupFile> {
    const run = this.queue.then(() => this.copyTo(dest));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async copyTo(dest: string): Promise<BackupFile> {
    try {
      const file = await this.copyOnce(dest);
      this.stats.ok++;
      this.stats.lastSuccessAt = Date.now();
      return file;
    } catch (err) {
      this.stats.failed++;
      throw err;
    }
  }

  private async copyOnce(dest: string): Promise<BackupFile> {
    if (this.dbPath === null) throw new BackupError(ON_POSTGRES);
    if (this.dbPath === ":memory:") throw new BackupError("the database is in memory (DEPLOYBOT_DB=:memory:); there is nothing on disk to back up");
    const temp = `${dest}${TEMP_MARK}${process.pid}-${randomBytes(4).toString("hex")}`;
    try {
      const answer = await copyInWorker(this.dbPath, temp);
      if (!answer.ok) throw new BackupError(`the backup copy failed its check: ${answer.problems.join("; ")}`);
      renameSync(temp, dest);
      syncDir(dirname(dest));
      const file = { path: dest, bytes: statSync(dest).size, ms: answer.ms };
      this.logger.info({ path: file.path, bytes: file.bytes, ms: file.ms }, "database backup written");
      return file;
    } finally {
      for (const leftover of [temp, `${temp}-wal`, `${temp}-shm`, `${temp}-journal`]) rmSync(leftover, { force: true });
    }
  }

  /**
   * A checked backup to send to an operator: written next to the database (a temp dir may be
   * memory), then unlinked as soon as it is opened, so nothing stays behind however the download
   * ends (the open handle keeps the bytes readable until the stream closes).
   */
  async openForDownload(now = new Date()): Promise<{ name: string; bytes: number; stream: ReadableStream<Uint8Array> }> {
    if (this.dbPath === null) throw new ApiError(409, "backup_unavailable", ON_POSTGRES);
    if (this.dbPath === ":memory:") throw new ApiError(409, "backup_unavailable", "the database is in memory (DEPLOYBOT_DB=:memory:); there is nothing on disk to back up");
    const name = backupName(now);
    const path = join(dirname(this.dbPath), `.download-${randomBytes(6).toString("hex")}-${name}`);
    let file: BackupFile;
    try {
      file = await this.backupTo(path);
    } catch (err) {
      if (err instanceof BackupError) throw new ApiError(500, "backup_failed", err.message);
      throw err;
    }
    const handle = await open(path, "r");
    rmSync(path, { force: true });
    return { name, bytes: file.bytes, stream: Readable.toWeb(handle.createReadStream()) as ReadableStream<Uint8Array> };
  }

  /** A new timestamped backup in `dir`, then all but the newest `keep` backups there are removed. */
  async rotate(dir: string, keep: number, now = new Date()): Promise<BackupFile> {
    const file = await this.backupTo(join(dir, backupName(now)));
    for (const old of listBackups(dir).slice(0, -keep)) rmSync(join(dir, old), { force: true });
    return file;
  }
}

export function backupName(at: Date): string {
  return `backup-${at.toISOString().replace(/[-:]/g, "").replace(".", "")}.db`;
}

/** Backups in `dir`, oldest first; temp files of an interrupted backup are removed on the way. */
export function listBackups(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  for (const n of names) if (n.startsWith("backup-") && n.includes(`.db${TEMP_MARK}`) && !n.includes(`${TEMP_MARK}${process.pid}-`)) rmSync(join(dir, n), { force: true });
  return names.filter((n) => BACKUP_NAME.test(n)).sort();
}

/** When the newest backup in `dir` was written (ms), or null. */
export function newestBackupAt(dir: string): number | null {
  const newest = listBackups(dir).at(-1);
  return newest ? statSync(join(dir, newest)).mtimeMs : null;
}

function syncDir(dir: string) {
  // a rename is durable once the directory entry is; not every platform lets a directory be fsynced
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {}
}

export const isBackupName = (path: string) => BACKUP_NAME.test(basename(path));

/**
 * Periodic backups into `dir`: the first one is due an interval after the newest backup already
 * there (a restart does not postpone backups, nor take one at every start), then every interval.
 * A failed backup is logged as an error and tried again at the next interval.
 */
export function startPeriodicBackups(backups: DatabaseBackups, opts: { dir: string; intervalMs: number; keep: number }, logger: Logger) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let stopped = false;
  const schedule = (delay: number) => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = backups
        .rotate(opts.dir, opts.keep)
        .catch((err) => logger.error({ err: (err as Error).message, dir: opts.dir }, "periodic database backup failed"))
        .finally(() => schedule(opts.intervalMs));
    }, delay);
    timer.unref();
  };
  mkdirSync(opts.dir, { recursive: true });
  const newest = newestBackupAt(opts.dir);
  // A file of that name is whole and checked (written to a temp name, renamed). Counted as the
  // last success, a restart does not leave deploybot_backup_last_success_timestamp_seconds at 0
  // until the next backup, up to an interval (6 h by default) later: the README's alert on
  // time() minus it fired after every restart.
  if (newest !== null && (backups.stats.lastSuccessAt ?? 0) < newest) backups.stats.lastSuccessAt = newest;
  schedule(newest === null ? 1000 : Math.max(1000, newest + opts.intervalMs - Date.now()));
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
