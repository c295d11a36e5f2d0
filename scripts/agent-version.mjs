#!/usr/bin/env node
// The agent's version moves with what its distribution is built from. Agents update themselves
// only to a newer version (semver): a change shipped under the same number never reaches a host
// that already runs that number. apps/agent/release.json holds the version and the hash of the
// sources it was recorded for; apps/agent/test/release.test.ts fails while they differ.
//
//   node scripts/agent-version.mjs            prints the recorded and the current state
//   node scripts/agent-version.mjs --record   records apps/agent/package.json's version with today's sources
//                                             (bump that version first when the sources changed)
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { sources } from "./build-agent.mjs";
import { repoRoot } from "./bundle.mjs";

export const releaseFile = join(repoRoot, "apps/agent/release.json");

/** Every file of the agent's sources, by path relative to the repository, sorted. */
function files() {
  const out = [];
  for (const path of sources) {
    if (!statSync(path).isDirectory()) out.push(path);
    else {
      for (const name of readdirSync(path, { recursive: true })) {
        // an editor's swap file or a stray .DS_Store is not a source
        if (!name.split(/[\\/]/).some((part) => part.startsWith(".")) && statSync(join(path, name)).isFile()) out.push(join(path, name));
      }
    }
  }
  return out.map((f) => relative(repoRoot, f).split("\\").join("/")).sort();
}

/** sha256 over each source's path and content: what the bundle, the units and the installer are made of. */
export function sourcesHash() {
  const hash = createHash("sha256");
  for (const file of files()) hash.update(file).update("\0").update(readFileSync(join(repoRoot, file))).update("\0");
  return `sha256:${hash.digest("hex")}`;
}

export const packageVersion = () => JSON.parse(readFileSync(join(repoRoot, "apps/agent/package.json"), "utf8")).version;

export const recorded = () => JSON.parse(readFileSync(releaseFile, "utf8"));

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { record: { type: "boolean" } } });
  if (values.record) {
    const before = recorded();
    const newer = (a, b) => {
      const [x, y] = [a, b].map((v) => v.split(/[-+]/)[0].split(".").map(Number));
      for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i] > y[i];
      return false;
    };
    if (sourcesHash() !== before.sources && !newer(packageVersion(), before.version)) {
      console.error(`the sources changed since ${before.version}: bump "version" in apps/agent/package.json past it first (it says ${packageVersion()})`);
      process.exit(1);
    }
    writeFileSync(releaseFile, `${JSON.stringify({ version: packageVersion(), sources: sourcesHash() }, null, 2)}\n`);
  }
  console.log(JSON.stringify({ recorded: recorded(), current: { version: packageVersion(), sources: sourcesHash() } }, null, 2));
}
