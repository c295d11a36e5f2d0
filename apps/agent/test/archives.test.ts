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
      const parsed = await readTar(stdout);
      expect(parsed.ok, format).toBe(true);
      if (!parsed.ok) continue;
      const byPath = new Map(parsed.entries.map((e) => [e.path.replace(/^\.\//, ""), e]));
      expect(byPath.get("a.txt")).toMatchObject({ type: "file", data: Buffer.from("hello") });
      expect(byPath.get("link")).toMatchObject({ type: "symlink", target: "a.txt" });
      if (format !== "ustar") expect(byPath.get(long)).toMatchObject({ type: "file", data: Buffer.from("long") });
    }
  });

  it("reads gzip and refuses garbage", async () => {
    expect(await readTar(makeTar([{ name: "x", content: "1" }], { gzip: true }), { gzip: true })).toMatchObject({ ok: true, entries: [{ path: "x" }] });
    expect(await readTar(Buffer.from("not a tar".repeat(100)))).toMatchObject({ ok: false });
    expect(await readTar(Buffer.from("nope"), { gzip: true })).toMatchObject({ ok: false, reason: expect.stringContaining("gzip") });
  });
});

describe("readTar refuses what is broken", () => {
  it("a truncated archive and a device file", async () => {
    const whole = makeTar([{ name: "a.txt", content: "x".repeat(2000) }]);
    expect(await readTar(whole.subarray(0, 1024))).toMatchObject({ ok: false });
    const fifo = Buffer.from(makeTar([{ name: "p", content: "" }]));
    fifo.write("6", 156, "ascii"); // FIFO
    fifo.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of fifo.subarray(0, 512)) sum += b;
    fifo.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
    expect(await readTar(fifo)).toMatchObject({ ok: false, reason: expect.stringContaining("unsupported tar entry type") });
  });
});

describe("readZip", () => {
  it("reads deflated files, directories and unix symlinks", async () => {
    const zip = makeZip([{ name: "dir", type: "dir" }, { name: "dir/a.txt", content: "hello zip" }, { name: "l", type: "symlink", target: "dir/a.txt" }]);
    expect(await readZip(zip)).toMatchObject({
      ok: true,
      entries: [{ type: "dir", path: "dir/" }, { type: "file", path: "dir/a.txt", data: Buffer.from("hello zip") }, { type: "symlink", path: "l", target: "dir/a.txt" }],
    });
  });

  it("reads a zip written by python's zipfile when python3 is present", async () => {
    const script = "import zipfile,sys,io\nb=io.BytesIO()\nz=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED)\nz.writestr('a/b.txt','py'*100)\nz.close()\nsys.stdout.buffer.write(b.getvalue())";
    const made = await run("python3", ["-c", script], { encoding: "buffer" }).catch(() => null);
    if (!made) return;
    expect(await readZip(made.stdout)).toMatchObject({ ok: true, entries: [{ type: "file", path: "a/b.txt", data: Buffer.from("py".repeat(100)) }] });
  });

  it("reads zip64 members (python's zipfile with force_zip64), which the old reader refused", async () => {
    const script = "import zipfile,sys,io\nb=io.BytesIO()\nz=zipfile.ZipFile(b,'w',zipfile.ZIP_DEFLATED)\nw=z.open('big/z.txt','w',force_zip64=True)\nw.write(b'z64'*50)\nw.close()\nz.close()\nsys.stdout.buffer.write(b.getvalue())";
    const made = await run("python3", ["-c", script], { encoding: "buffer" });
    expect(await readZip(made.stdout)).toMatchObject({ ok: true, entries: [{ type: "file", path: "big/z.txt", data: Buffer.from("z64".repeat(50)) }] });
  });

  it("hands traversal names through to the path checks, which refuse them", async () => {
    const parsed = await readZip(makeZip([{ name: "../../evil", content: "x" }]));
    expect(parsed).toMatchObject({ ok: true, entries: [{ path: "../../evil" }] });
    if (parsed.ok) expect(checkEntries(parsed.entries)).toMatchObject({ ok: false, reason: expect.stringContaining("escapes the tree") });
  });

  it("refuses what is not a zip", async () => {
    expect(await readZip(Buffer.from("PK not really"))).toMatchObject({ ok: false });
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
    const checked = checkEntries(await readTarOk(makeTar([{ name: "d", type: "dir" }, { name: "d/f", content: "data" }, { name: "s", type: "symlink", target: "d/f" }, { name: "h", type: "hardlink", target: "d/f" }])));
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

async function readTarOk(buf: Buffer) {
  const parsed = await readTar(buf);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.entries;
}
