import { describe, expect, it } from "vitest";
import { packageVersion, recorded, sourcesHash } from "../../../scripts/agent-version.mjs";

/**
 * Agents update themselves only to a newer version, so the version must move with every change
 * to what the distribution is built from. Before this rule it stayed 0.1.0 through every change
 * to the agent, and no upgraded controller ever offered its agents anything.
 */
describe("the agent's version", () => {
  it("is recorded with the sources it was released from: a change to them needs a new version", () => {
    const release = recorded();
    const current = sourcesHash();
    const version = packageVersion();
    if (version === release.version) {
      expect(
        current,
        `the agent's sources changed since version ${release.version} was recorded: bump "version" in apps/agent/package.json (agents update only to a newer one), then run \`node scripts/agent-version.mjs --record\``,
      ).toBe(release.sources);
    } else {
      expect.fail(`apps/agent/package.json says ${version}, apps/agent/release.json ${release.version}: run \`node scripts/agent-version.mjs --record\``);
    }
  });

});
