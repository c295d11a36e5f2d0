import { defineConfig } from "vite";

// Built once into dist/ and served by the controller at `/` (same origin, no CDN).
export default defineConfig({
  root: import.meta.dirname,
  logLevel: "warn",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // one small entry: a preload polyfill would be dead weight for the browsers we support
    modulePreload: { polyfill: false },
  },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
});
