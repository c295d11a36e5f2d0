import { stringify } from "yaml";
import { ApiError } from "../lib/errors";

/** Shell-quotes one argument: the command is pasted into a root shell on a new server. */
const quote = (v: string) => `'${v.replace(/'/g, "'\\''")}'`;

const LABELS = /^[A-Za-z0-9][A-Za-z0-9_.=:/-]*(,[A-Za-z0-9][A-Za-z0-9_.=:/-]*)*$/;
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

export interface InstallTarget {
  url: string;
  labels?: string;
  hostname?: string;
}

const URL_PART = /^https?:\/\/[^\s'",]+$/;

/** `url` may list several controllers (`a,b`): agents fail over between them. */
function checked(t: InstallTarget): InstallTarget & { url: string } {
  const parts = t.url.split(",");
  if (!parts.every((p) => URL_PART.test(p))) throw new ApiError(400, "invalid_url", "url must be an http(s) URL, or several separated by commas");
  if (t.labels !== undefined && !LABELS.test(t.labels)) {
    throw new ApiError(400, "invalid_labels", "labels must be a comma-separated list of letters, digits and _ . = : / -");
  }
  if (t.hostname !== undefined && !HOSTNAME.test(t.hostname)) throw new ApiError(400, "invalid_hostname", "hostname must be 1-63 letters, digits, '_', '.', '-'");
  return { ...t, url: parts.map((p) => p.replace(/\/$/, "")).join(",") };
}

/**
 * The installer's arguments and the pipeline that fetches it from the (first) controller; the
 * installer gets the whole list, fetches the agent from the first controller that answers and
 * writes the list to DEPLOYBOT_URL.
 */
function pipeline(t: InstallTarget, sudo: boolean): string {
  const first = t.url.split(",")[0]!;
  const args = ["--url", quote(t.url), ...(t.labels ? ["--labels", quote(t.labels)] : []), ...(t.hostname ? ["--hostname", quote(t.hostname)] : [])];
  return [
    `curl -fsSL --retry 5 --retry-connrefused -H @<(printf 'Authorization: Bearer %s\\n' "$DEPLOYBOT_JOIN_TOKEN") ${quote(`${first}/v1/agents/dist/install-agent.sh`)}`,
    `| ${sudo ? "sudo --preserve-env=DEPLOYBOT_JOIN_TOKEN " : ""}bash -s -- ${args.join(" ")}`,
  ].join(" ");
}

/**
 * A ready command for a new Docker host: it fetches the installer from this controller, which
 * then fetches the agent from it too (no checkout on the host). The join token travels in the
 * environment and in a header read from a process substitution, never in an argument list.
 */
export function installCommand(target: InstallTarget, joinToken: string) {
  const t = checked(target);
  return {
    url: t.url,
    command: `export DEPLOYBOT_JOIN_TOKEN=${quote(joinToken)}; ${pipeline(t, true)}`,
    note: "run in bash on the new host (Docker, git and Node >= 20.19 installed); it installs the agent from this controller; the command contains the join token",
  };
}

/** Node from NodeSource's apt repository: Debian 12 and Ubuntu 24.04 ship Node 18, the agent needs >= 20.19. */
const NODE_SETUP = "https://deb.nodesource.com/setup_22.x";

/**
 * cloud-init user-data for a new server (a Droplet, any cloud): installs Docker, git, curl and
 * Node, then the agent from this controller, which registers on its own. The join token is in
 * a root-only file, read by the install step; cloud-init's user-data is readable by root only
 * on the server, but anyone who can read the provider's metadata of the server can read it.
 */
export function cloudInit(target: InstallTarget, joinToken: string): string {
  const t = checked(target);
  const install = `set -euo pipefail; export DEPLOYBOT_JOIN_TOKEN="$(cat /etc/deploybot/join-token)"; ${pipeline(t, false)}; rm -f /etc/deploybot/join-token`;
  const doc = {
    package_update: true,
    packages: ["docker.io", "git", "curl", "ca-certificates", "gnupg", "haproxy"],
    write_files: [{ path: "/etc/deploybot/join-token", permissions: "0600", owner: "root:root", content: `${joinToken}\n` }],
    runcmd: [
      ["systemctl", "enable", "--now", "docker"],
      ["bash", "-c", `set -euo pipefail; curl -fsSL --retry 5 ${NODE_SETUP} | bash -; apt-get install -y nodejs`],
      ["bash", "-c", install],
    ],
  };
  return `#cloud-config\n# deploybot agent for ${t.url}${t.hostname ? ` as ${t.hostname}` : ""}${t.labels ? ` (labels ${t.labels})` : ""}\n${stringify(doc, { lineWidth: 0 })}`;
}
