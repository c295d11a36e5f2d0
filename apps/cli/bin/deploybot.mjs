#!/usr/bin/env node
// Runs the TypeScript source through tsx, resolved next to this file, so `deploybot` works
// from any directory (global install, pnpm link, or node apps/cli/bin/deploybot.mjs).
import { register } from "tsx/esm/api";

register();
await import("../src/main.ts");
