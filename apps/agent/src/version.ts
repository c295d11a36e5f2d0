import pkg from "../package.json" with { type: "json" };

// Set only by the bundler when a test stamps a bundle with another version (scripts/build-agent.mjs --version).
declare const __DEPLOYBOT_AGENT_VERSION__: string | undefined;

/**
 * The agent's version, from one place: apps/agent/package.json (inlined into the bundle). The
 * controller's agent bundle manifest carries the same number, so "is this agent older" is a
 * comparison of two values that were never typed twice.
 */
export const AGENT_VERSION: string = typeof __DEPLOYBOT_AGENT_VERSION__ === "string" ? __DEPLOYBOT_AGENT_VERSION__ : pkg.version;
