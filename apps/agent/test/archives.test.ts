import { execFile } from "node:child_process";
import { lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { readTar } from "../src/sources/tarReader";
import { checkEntries, writeEntries } from "../src/sources/writeEntries";
import { readZip } from "../src/sources/zipReader";
import { makeTar, makeZip } from "./archiveFixtures";

const run = promisify(execFile);
const dirs: string[] = [];
const tempDir = async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), "deploybot-archive-"));
  dirs.push(dir);
  return dir;
};
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe("readTar", () => {
  it("reads what GNU tar writes, including long names (pax/GNU) and symlinks", async () => {
    const src = await tempDir();
    const long = `${"deep/".repeat(30)}file.txt`;
    await mkdir(path.join(src, path.dirname(long)), { recursive: true });
    await writeFile(path.join(src, long), "long");
    await writeFile(path.join(src, "a.txt"), "hello");
    await symlink("a.txt", path.join(src, "link"));
    for (const format of ["gnu", "pax", "ustar"]) {
      if (format === "ustar") await rm(path.join(src, "deep"), { recursive: true });
      const { stdout } = await run("tar", [`--format=${format}`, "-cf", "-", "-C", src, "."], { encoding: "buffer", maxBuffer: 1 << 24 });
      const parsed = readTar(stdout);
      expect(parsed.ok, format).toBe(true);
      if (!parsed.ok) continue;
      const byPath = new Map(parsed.entries.map((e) => [e.path.replace(/^\.\//, ""), e]));
      expect(byPath.get("a.txt")).toMatchObject({ type: "file", data: Buffer.from("hello") });
      expect(byPath.get("link")).toMatchObject({ type: "symlink", target: "a.txt" });
      if (format !== "ustar") expect(byPath.get(long)).toMatchObject({ type: "file", data: Buffer.from("long") });
    }
  });

  it("reads gzip and refuses garbage", () => {
    expect(readTar(makeTar([{ name: "x", content: "1" }], { gzip: true }), { gzip: true })).toMatchObject({ ok: true, entries: [{ path: "x" }] });
    expect(readTar(Buffer.from("not a tar".repeat(100)))).toMatchObject({ ok: false });
    expect(readTar(Buffer.from("nope"), { gzip: true })).toMatchObject({ ok: false, reason: expect.stringContaining("gzip") });
  });
});

describe("readZip", () => {
  it("reads deflated files, directories and unix symlinks", () => {
    const zip = makeZip([{ name: "dir", type: "dir" }, { name: "dir/a.txt", content: "hello zip" }, { name: "l", type: "symlink", target: "dir/a.txt" }]);
    expect(readZip(zip)).toMatchObject({
      ok: true,
      entries: [{ type: "dir", path: "dir/" }, { type: "file", path: "dir/a.txt", data: Buffer.from("hello zip") }, { type: "symlink", path: "l", target: "dir/a.txt" }],
    });
  });

  it("reads a zip written by python's zipfile when python3 is present", async () => {
    const script = "import zipfile,sys,io\nb=io.BytesIO()\nz=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED)\nz.writestr('a/b.txt','py'*100)\nz.close()\nsys.stdout.buffer.write(b.getvalue())";
    const made = await run("python3", ["-c", script], { encoding: "buffer" }).catch(() => null);
    if (!made) return;
    expect(readZip(made.stdout)).toMatchObject({ ok: true, entries: [{ type: "file", path: "a/b.txt", data: Buffer.from("py".repeat(100)) }] });
  });

  it("refuses what is not a zip", () => {
    expect(readZip(Buffer.from("PK not really"))).toMatchObject({ ok: false });
  });
});

describe("checkEntries refuses traversal before anything is written", () => {
  const refused: [string, Parameters<typeof checkEntries>[0]][] = [
    ["..", [{ type: "file", path: "../evil", mode: 0o644, data: Buffer.from("x") }]],
    ["nested ..", [{ type: "file", path: "a/../../evil", mode: 0o644, data: Buffer.from("x") }]],
    ["absolute", [{ type: "file", path: "/etc/cron.d/evil", mode: 0o644, data: Buffer.from("x") }]],
    ["backslash", [{ type: "file", path: "..\\evil", mode: 0o644, data: Buffer.from("x") }]],
    ["drive letter", [{ type: "file", path: "C:evil", mode: 0o644, data: Buffer.from("x") }]],
    ["NUL", [{ type: "file", path: "a\0b", mode: 0o644, data: Buffer.from("x") }]],
    ["absolute symlink", [{ type: "symlink", path: "etc", target: "/etc" }]],
    ["symlink up", [{ type: "symlink", path: "a/up", target: "../../x" }]],
    ["hardlink out", [{ type: "hardlink", path: "h", target: "../../etc/passwd" }]],
    ["hardlink absolute", [{ type: "hardlink", path: "h", target: "/etc/passwd" }]],
  ];
  for (const [name, entries] of refused) {
    it(`refuses ${name}`, () => expect(checkEntries(entries).ok).toBe(false));
  }

  it("accepts links that stay inside and ignores a bare ./ root entry", () => {
    const checked = checkEntries([
      { type: "dir", path: "./", mode: 0o755 },
      { type: "symlink", path: "a/b/up", target: "../c" },
      { type: "symlink", path: "self", target: "." },
      { type: "file", path: "./a/./x", mode: 0o644, data: Buffer.from("x") },
    ]);
    expect(checked).toMatchObject({ ok: true, entries: [{ path: "a/b/up" }, { path: "self" }, { path: "a/x" }] });
  });
});

describe("writeEntries", () => {
  it("writes files, dirs, in-tree symlinks and hardlinks", async () => {
    const root = await tempDir();
    const checked = checkEntries(readTarOk(makeTar([{ name: "d", type: "dir" }, { name: "d/f", content: "data" }, { name: "s", type: "symlink", target: "d/f" }, { name: "h", type: "hardlink", target: "d/f" }])));
    expect(checked.ok).toBe(true);
    if (!checked.ok) return;
    expect(await writeEntries(root, checked.entries)).toBe(2);
    expect(await readFile(path.join(root, "s"), "utf8")).toBe("data");
    expect(await readFile(path.join(root, "h"), "utf8")).toBe("data");
    expect(await readlink(path.join(root, "s"))).toBe("d/f");
  });

  it("refuses to write through a symlink already on disk that leads out of the tree", async () => {
    const root = await tempDir();
    const outside = await tempDir();
    await symlink(outside, path.join(root, "escape"));
    await expect(writeEntries(root, [{ type: "file", path: "escape/pwned", mode: 0o644, data: Buffer.from("x") }])).rejects.toThrow(/outside the tree/);
    await expect(lstat(path.join(outside, "pwned"))).rejects.toThrow();
    await expect(writeEntries(root, [{ type: "file", path: "escape", mode: 0o644, data: Buffer.from("x") }])).rejects.toThrow(/through a symlink/);
  });
});

function readTarOk(buf: Buffer) {
  const parsed = readTar(buf);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.entries;
}
