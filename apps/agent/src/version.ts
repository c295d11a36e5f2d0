import pkg from "../package.json" with { type: "json" };

// Set only by the bundler when a test stamps a bundle with another version (scripts/build-agent.mjs --version).
declare const __DEPLOYBOT_AGENT_VERSION__: string | undefined;

/**
 * The agent's version, from one place: apps/agent/package.json (inlined into the bundle). The
 * controller's agent bundle manifest carries the same number, so "is this agent older" is a
 * comparison of two values that were never typed twice.
 */
export const AGENT_VERSION: string = typeof __DEPLOYBOT_AGENT_VERSION__ === "string" ? __DEPLOYBOT_AGENT_VERSION__ : pkg.version;

// Set by scripts/build-agent.mjs in every bundle it builds; an agent run from its sources has not.
declare const __DEPLOYBOT_AGENT_BUNDLE__: boolean | undefined;

/**
 * Whether this process runs the agent's bundle (as installed: releases/VERSION behind `current`)
 * rather than a checkout's sources. A self-update switches the `current` link and exits for the
 * service manager to start the new bundle: an agent run from a checkout would only start its own
 * sources again, be offered the same version, and loop.
 */
export const RUNS_FROM_BUNDLE: boolean = typeof __DEPLOYBOT_AGENT_BUNDLE__ === "boolean" && __DEPLOYBOT_AGENT_BUNDLE__;
