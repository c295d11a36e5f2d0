import { z } from "zod";
import { type ApiClient, CliError, ExitCode, usageError } from "../client";
import { type Command, type Context, listOption, requiredOption, seg, sleep, stringOption } from "../command";
import { DigitalOcean } from "../digitalocean";
import { hostList } from "./hosts";

const LABELS = /^[A-Za-z0-9][A-Za-z0-9_.=:/-]*(,[A-Za-z0-9][A-Za-z0-9_.=:/-]*)*$/;
const HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,62}$/;
// A new Droplet boots, installs Docker and Node, then the agent: usually 2-4 minutes.
const DEFAULT_WAIT_SECONDS = 900;
const POLL_MS = 5_000;

/** cloud-init user-data from the controller (it holds the join token). */
async function fetchCloudInit(client: ApiClient, q: { url?: string; labels?: string; hostname?: string }): Promise<string> {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) query.set(k, v);
  const qs = query.toString();
  return (await client.bytes(`/v1/agents/cloud-init${qs ? `?${qs}` : ""}`)).data.toString("utf8");
}

function checkLabels(labels: string | undefined) {
  if (labels !== undefined && !LABELS.test(labels)) throw usageError("--labels must be comma-separated labels of letters, digits and _ . = : / -");
}

export const agentsCloudInit: Command = {
  name: "agents cloud-init",
  summary: "Print cloud-init user-data that makes a new server a deploybot host (it contains the join token; admin).",
  usage: "[--url URL] [--labels L] [--hostname NAME]",
  options: {
    url: { type: "string", value: "URL", description: "the controller URL the agent will use (default: the one the controller sees)" },
    labels: { type: "string", value: "L", description: "comma-separated agent labels, e.g. builder,eu" },
    hostname: { type: "string", value: "NAME", description: "the host name jobs target (default: the server's own)" },
  },
  notes: [
    "The user-data installs Docker, git, curl and Node (NodeSource), then the agent from the controller",
    "(GET /v1/agents/dist/install-agent.sh), which registers on its own. Give it to any cloud's",
    "'user data' field; check it with: cloud-init schema --config-file FILE. Treat it as a secret.",
  ],
  examples: ["deploybot agents cloud-init --url https://deploy.example.com --labels builder > user-data.yaml"],
  async run(ctx, values) {
    const labels = stringOption(values, "labels");
    checkLabels(labels);
    const text = await fetchCloudInit(ctx.client(), { url: stringOption(values, "url"), labels, hostname: stringOption(values, "hostname") });
    if (ctx.out.json) ctx.out.printJson({ userData: text });
    else ctx.out.line(text.trimEnd());
    return 0;
  },
};

function digitalOcean(ctx: Context, provider: string | undefined): DigitalOcean {
  if ((provider ?? "digitalocean") !== "digitalocean") throw usageError(`unknown --provider '${provider}' (supported: digitalocean)`);
  const token = ctx.env.DEPLOYBOT_DO_TOKEN;
  if (!token) throw new CliError(ExitCode.auth, "set DEPLOYBOT_DO_TOKEN to a DigitalOcean API token with read and write scope");
  return new DigitalOcean({ token, apiUrl: ctx.env.DEPLOYBOT_DO_API_URL, signal: ctx.signal });
}

export const hostsCreate: Command = {
  name: "hosts create",
  summary: "Create a cloud server (a DigitalOcean Droplet) that installs the agent, and wait until it registers.",
  usage: "--provider digitalocean --name NAME --region REGION --size SIZE [--image IMAGE] [--labels L] [--ssh-key ID ...] [--url URL] [--no-wait]",
  options: {
    provider: { type: "string", value: "PROVIDER", description: "digitalocean (the only one so far)" },
    name: { type: "string", value: "NAME", description: "the Droplet's name, which is also the host name jobs target" },
    region: { type: "string", value: "REGION", description: "a DigitalOcean region slug, e.g. lon1" },
    size: { type: "string", value: "SIZE", description: "a Droplet size slug, e.g. s-1vcpu-1gb" },
    image: { type: "string", value: "IMAGE", description: "the image slug (default debian-12-x64)" },
    labels: { type: "string", value: "L", description: "comma-separated agent labels, e.g. builder,eu" },
    "ssh-key": { type: "string", value: "ID", multiple: true, description: "an SSH key id or fingerprint to put on the Droplet (repeat for several)" },
    url: { type: "string", value: "URL", description: "the controller URL the agent will use (default: the one the controller sees)" },
    "no-wait": { type: "boolean", description: "return once the Droplet is created, without waiting for its agent" },
    timeout: { type: "string", value: "SECONDS", description: `how long to wait for the agent to register (default ${DEFAULT_WAIT_SECONDS})` },
  },
  notes: [
    "The token comes from DEPLOYBOT_DO_TOKEN and is never printed. The Droplet is tagged 'deploybot';",
    "its user-data is `deploybot agents cloud-init` for this name and labels. Exit 0 once the agent is",
    "online; 1 if it does not register in time (the Droplet stays: deploybot hosts destroy NAME).",
  ],
  examples: ["deploybot hosts create --provider digitalocean --name web-3 --region lon1 --size s-1vcpu-1gb --labels web"],
  async run(ctx, values) {
    const name = requiredOption(this, values, "name");
    if (!HOSTNAME.test(name)) throw usageError("--name must be 1-63 letters, digits and '-' (a Droplet name that is also a host name)");
    const labels = stringOption(values, "labels");
    checkLabels(labels);
    const timeout = Number(stringOption(values, "timeout") ?? DEFAULT_WAIT_SECONDS);
    if (!Number.isFinite(timeout) || timeout <= 0) throw usageError("--timeout must be a positive number of seconds");
    const spec = {
      name,
      region: requiredOption(this, values, "region"),
      size: requiredOption(this, values, "size"),
      image: stringOption(values, "image") ?? "debian-12-x64",
    };
    const cloud = digitalOcean(ctx, stringOption(values, "provider"));
    const client = ctx.client();
    const existing = (await client.get("/v1/hosts", hostList)).data.hosts.find((h) => h.hostname === name);
    if (existing) throw new CliError(ExitCode.api, `a host named ${name} is already registered (deploybot agents remove ${name} first)`);
    const userData = await fetchCloudInit(client, { url: stringOption(values, "url"), labels, hostname: name });
    const droplet = await cloud.createDroplet({ ...spec, userData, tags: [], sshKeys: listOption(values, "ssh-key") });
    ctx.out.note(`droplet ${droplet.name} (${droplet.id}) created in ${spec.region}, ${spec.size}, ${spec.image}: ${droplet.status}`);
    if (values["no-wait"]) {
      if (ctx.out.json) ctx.out.printJson({ droplet });
      else ctx.out.line(String(droplet.id));
      return 0;
    }
    const deadline = Date.now() + timeout * 1000;
    for (;;) {
      const host = (await client.get("/v1/hosts", hostList)).data.hosts.find((h) => h.hostname === name && h.online);
      if (host) {
        if (ctx.out.json) ctx.out.printJson({ droplet, host });
        else ctx.out.line(`host ${name} registered (agent ${host.id}, version ${host.version})`);
        return 0;
      }
      if (Date.now() > deadline) {
        ctx.out.note(`host ${name} did not register within ${timeout} s; the droplet stays (deploybot hosts destroy ${name})`);
        return 1;
      }
      ctx.out.progress(`waiting for ${name} to boot and register its agent`);
      await sleep(POLL_MS, ctx.signal);
    }
  },
};

export const hostsDestroy: Command = {
  name: "hosts destroy",
  summary: "Destroy a host's cloud server (the deploybot-tagged Droplet of that name) and forget its agent.",
  usage: "NAME [--provider digitalocean]",
  positionals: { names: ["NAME"], required: 1 },
  options: { provider: { type: "string", value: "PROVIDER", description: "digitalocean (the only one so far)" } },
  notes: ["Only Droplets tagged 'deploybot' are considered; none or several with that name is an error (exit 4 / 6)."],
  examples: ["deploybot hosts destroy web-3"],
  async run(ctx, values, [name]) {
    const cloud = digitalOcean(ctx, stringOption(values, "provider"));
    const droplets = await cloud.dropletsNamed(name!);
    if (droplets.length === 0) throw new CliError(ExitCode.notFound, `no deploybot droplet named ${name}`);
    if (droplets.length > 1) throw new CliError(ExitCode.api, `${droplets.length} deploybot droplets are named ${name} (${droplets.map((d) => d.id).join(", ")}); delete the right one in DigitalOcean's console`);
    const droplet = droplets[0]!;
    await cloud.deleteDroplet(droplet.id);
    const client = ctx.client();
    const known = (await client.get("/v1/hosts", hostList)).data.hosts.some((h) => h.hostname === name);
    if (known) await client.delete(`/v1/agents/${seg(name!)}`, z.null());
    if (ctx.out.json) ctx.out.printJson({ destroyed: { id: droplet.id, name: droplet.name }, agentRemoved: known });
    else ctx.out.line(`droplet ${droplet.name} (${droplet.id}) destroyed${known ? `; host ${name} removed from the controller` : ""}`);
    return 0;
  },
};
