#!/usr/bin/env node
// Runs the bundled CLI (dist/deploybot.mjs: one file, plain Node, ~0.12 s to --help where
// tsx took ~0.43 s). In a checkout the bundle is rebuilt first whenever a source is newer, so
// `deploybot` always runs the code you see; an install without the sources just runs the bundle.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const at = (rel) => fileURLToPath(new URL(rel, import.meta.url));
const dist = at("../dist/deploybot.mjs");
const builder = at("../../../scripts/bundle.mjs");
if (existsSync(builder)) {
  const { bundle, isStale } = await import(builder);
  const sources = [at("../src"), at("../../../packages/protocol/src"), at("../package.json")];
  if (isStale(dist, sources)) await bundle({ entry: at("../src/main.ts"), outfile: dist });
}
await import(dist);
