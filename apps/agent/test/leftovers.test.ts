import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isDiskFull, localIoReason } from "../src/diskFull";
import { removeLeftoverFiles } from "../src/leftovers";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "deploybot-leftovers-"));
  dirs.push(dir);
  for (const sub of ["work", "spool", "results"]) mkdirSync(join(dir, sub));
  return dir;
}

const spool = (dir: string, jobId: string, lines: number, acked: number | null) => {
  writeFileSync(join(dir, "spool", `${jobId}.jsonl`), Array.from({ length: lines }, (_, i) => `{"line":"${i}"}\n`).join(""));
  if (acked !== null) writeFileSync(join(dir, "spool", `${jobId}.meta.json`), JSON.stringify({ leaseId: "l", acked }));
};

describe("leftovers of jobs the agent no longer holds", () => {
  it("removes work dirs and result files of other jobs, never the held job's", () => {
    const dir = stateDir();
    mkdirSync(join(dir, "work", "job-held", "src"), { recursive: true });
    mkdirSync(join(dir, "work", "job-gone", "src"), { recursive: true });
    writeFileSync(join(dir, "work", "job-gone", "src", "big"), "x".repeat(1024));
    writeFileSync(join(dir, "results", "job-held"), "r");
    writeFileSync(join(dir, "results", "job-gone"), "r");
    const report = removeLeftoverFiles(dir, new Set(["job-held"]));
    expect(report.workDirs).toEqual(["job-gone"]);
    expect(report.results).toEqual(["job-gone"]);
    expect(existsSync(join(dir, "work", "job-held", "src"))).toBe(true);
    expect(existsSync(join(dir, "work", "job-gone"))).toBe(false);
    expect(existsSync(join(dir, "results", "job-held"))).toBe(true);
  });

  it("removes a spool only when every line was acknowledged (or it has no lease to upload with)", () => {
    const dir = stateDir();
    spool(dir, "job-acked", 5, 5);
    spool(dir, "job-owing", 5, 3);
    spool(dir, "job-nometa", 2, null);
    spool(dir, "job-held", 4, 4);
    const report = removeLeftoverFiles(dir, new Set(["job-held"]));
    expect(report.spools.sort()).toEqual(["job-acked", "job-nometa"]);
    expect(existsSync(join(dir, "spool", "job-acked.jsonl"))).toBe(false);
    expect(existsSync(join(dir, "spool", "job-acked.meta.json"))).toBe(false);
    expect(existsSync(join(dir, "spool", "job-owing.jsonl"))).toBe(true);
    expect(existsSync(join(dir, "spool", "job-held.jsonl"))).toBe(true);
  });

  it("a state dir without any of it is fine", () => {
    const dir = mkdtempSync(join(tmpdir(), "deploybot-leftovers-"));
    dirs.push(dir);
    expect(removeLeftoverFiles(dir, new Set())).toEqual({ workDirs: [], spools: [], results: [] });
  });
});

describe("a full disk in a job's error", () => {
  it("says the disk is full and where, with what is free there", () => {
    const dir = stateDir();
    // what fs.writeFile throws on a full disk (the path is absent for write(2))
    const err = Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", errno: -28, syscall: "write" });
    const reason = localIoReason(err, join(dir, "work", "job-1"));
    expect(reason).toMatch(/^the disk is full: no space left on the filesystem holding .*work\/job-1 \(\d+\.?\d* MiB free of \d+\.?\d* MiB\)$/);
    const opened = Object.assign(new Error("ENOSPC: no space left on device, open '/x/spool/j.jsonl'"), { code: "ENOSPC", path: "/x/spool/j.jsonl" });
    expect(localIoReason(opened, dir)).toContain("holding /x/spool/j.jsonl");
  });

  it("tells a full disk from other local errors and recognises tools' own wording", () => {
    expect(isDiskFull("fatal: write error: No space left on device")).toBe(true);
    expect(isDiskFull(Object.assign(new Error("quota"), { code: "EDQUOT" }))).toBe(true);
    const eio = Object.assign(new Error("EIO: i/o error, write"), { code: "EIO" });
    expect(isDiskFull(eio)).toBe(false);
    expect(localIoReason(eio, "/state")).toBe("local I/O error on the agent at /state: EIO: i/o error, write");
  });
});
