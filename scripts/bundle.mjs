// Bundles an app's TypeScript entry (and its workspace packages and npm dependencies) into one
// ES module with esbuild, so it runs on plain Node: the CLI answers --help in ~0.12 s instead
// of ~0.43 s through tsx, and hosts run the agent as one process without a node_modules tree.
import { randomBytes } from "node:crypto";
import { readdirSync, renameSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * Writes `outfile` atomically (a temp file, then rename), so a reader never sees half a bundle
 * and two builds racing leave one whole file. `define` replaces identifiers at build time.
 */
export async function bundle({ entry, outfile, define = {}, external = [], stubs = {}, minify = false }) {
  const { build } = await import("esbuild");
  const tmp = `${outfile}.${randomBytes(4).toString("hex")}.tmp`;
  await build({
    entryPoints: [entry],
    outfile: tmp,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    legalComments: "none",
    logLevel: "warning",
    define,
    external,
    minify,
    plugins: [stubModules(stubs)],
    // CommonJS dependencies (dockerode, pino's helpers) call require() and read __dirname.
    banner: {
      js: [
        'import { createRequire as __dbCreateRequire } from "node:module";',
        'import { dirname as __dbDirname } from "node:path";',
        'import { fileURLToPath as __dbFileUrlToPath } from "node:url";',
        "const require = __dbCreateRequire(import.meta.url);",
        "const __filename = __dbFileUrlToPath(import.meta.url);",
        "const __dirname = __dbDirname(__filename);",
      ].join(" "),
    },
  });
  renameSync(tmp, outfile);
  return outfile;
}

/** True when `outfile` is missing or older than any of `paths` (files, or directories walked) (a checkout that moved on). */
export function isStale(outfile, paths) {
  let built;
  try {
    built = statSync(outfile).mtimeMs;
  } catch {
    return true;
  }
  for (const path of paths) {
    let stat;
    try {
      stat = statSync(path);
    } catch {
      continue;
    }
    if (stat.mtimeMs > built) return true;
    if (!stat.isDirectory()) continue;
    for (const name of readdirSync(path, { recursive: true })) {
      if (statSync(join(path, name)).mtimeMs > built) return true;
    }
  }
  return false;
}

/**
 * Replaces whole packages with a few lines of code, for dependencies the bundle carries but
 * never uses (dockerode's ssh transport): smaller file, less memory at start.
 */
function stubModules(stubs) {
  const names = Object.keys(stubs);
  return {
    name: "stub-modules",
    setup(build) {
      if (names.length === 0) return;
      const filter = new RegExp(`^(${names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|")})$`);
      build.onResolve({ filter }, (args) => ({ path: args.path, namespace: "stub" }));
      build.onLoad({ filter: /.*/, namespace: "stub" }, (args) => ({ contents: stubs[args.path], loader: "js" }));
    },
  };
}
