import { routeInfo } from "@deploybot/protocol";
import { z } from "zod";
import { type Command, seg } from "../command";

// GET /v1/apps/{name}: the app's domains and each host's route; read loosely past these.
const answerSchema = z
  .object({
    app: z.object({ name: z.string(), domains: z.array(z.string()).default([]), tls: z.string().optional(), replicas: z.number().optional() }).passthrough(),
    routes: z.array(routeInfo.extend({ host: z.string(), online: z.boolean(), healthy: z.number() })).default([]),
  })
  .passthrough();

export const routes: Command = {
  name: "routes",
  summary: "Show an app's domains and, per host, the proxy's upstreams with their state and health.",
  usage: "APP",
  positionals: { names: ["APP"], required: 1 },
  notes: [
    "An upstream is one container in the host proxy's route: ready (takes traffic), drain (finishing its requests).",
    "HEALTH is HAProxy's own check of the container (up/down); figures are as of the host's last heartbeat.",
    "With tls auto or internal, a second table shows each host's certificate: issuer, end, when it is ordered again, and why the last order failed.",
  ],
  examples: ["deploybot routes web", "deploybot routes web --json | jq '.routes[] | {host, healthy}'"],
  async run(ctx, _values, [app]) {
    const answer = await ctx.client().get(`/v1/apps/${seg(app!)}`, answerSchema);
    if (ctx.out.json) {
      ctx.out.printJson({ app: answer.data.app.name, domains: answer.data.app.domains, routes: answer.data.routes });
      return 0;
    }
    const { app: a, routes: hostRoutes } = answer.data;
    if (a.domains.length === 0) {
      ctx.out.note(`app ${a.name} has no domains: it runs in port mode (add domains and proxy.port in apps.yaml)`);
      return 0;
    }
    ctx.out.note(`${a.name}: ${a.domains.join(", ")} (tls ${a.tls ?? "?"}, ${a.replicas ?? 1} replica(s) per host in apps.yaml)`);
    if (hostRoutes.length === 0) {
      ctx.out.note("no host reports a route yet (deploy the app first)");
      return 0;
    }
    const { paint } = ctx.out;
    ctx.out.table(
      ["HOST", "HEALTHY", "UPSTREAM", "ADDRESS", "STATE", "HEALTH", "RELEASE"],
      hostRoutes.flatMap((r) =>
        (r.upstreams.length > 0 ? r.upstreams : [null]).map((u) => [
          `${r.host}${r.online ? "" : " (offline)"}`,
          `${r.healthy}/${r.upstreams.length}`,
          u?.container ?? "-",
          u?.address ?? "-",
          u?.state ?? "-",
          u ? (u.health === "up" ? paint.green(u.health) : u.health === "down" ? paint.red(u.health) : u.health) : "-",
          u?.release ?? "-",
        ]),
      ),
    );
    if (a.tls && a.tls !== "off") {
      // what each host serves on https (agents before this report nothing: "-")
      const now = Date.now();
      ctx.out.line();
      ctx.out.table(
        ["HOST", "CERTIFICATE", "VALID UNTIL", "RENEWS FROM", "LAST ORDER"],
        hostRoutes.map((r) => {
          const c = r.certificate;
          const state = !c ? paint.red("none reported") : Date.parse(c.validTo) <= now ? paint.red("expired") : Date.parse(c.renewalDueAt) <= now ? paint.yellow("renewal due") : paint.green("ok");
          return [r.host, `${state}${c ? ` (${c.issuer})` : ""}`, c?.validTo.slice(0, 10) ?? "-", c?.renewalDueAt.slice(0, 10) ?? "-", r.certificateError ? paint.red(`failed: ${r.certificateError}`) : "-"];
        }),
      );
    }
    return 0;
  },
};
