import { z } from "zod";

/**
 * A domain the proxy routes: lower-case DNS labels (letters, digits, '-', no '-' at either end,
 * 1-63 characters each), at least two of them, 253 characters at most. No wildcards, no ports,
 * no trailing dot: the value goes into the proxy's host map and into certificate orders.
 */
export const domainName = z
  .string()
  .max(253, "is longer than 253 characters")
  .superRefine((value, ctx) => {
    const problem = domainProblem(value);
    if (problem) ctx.addIssue({ code: "custom", message: `'${value}' is not a valid domain: ${problem}` });
  });

export function domainProblem(value: string): string | null {
  if (value.length === 0) return "it is empty";
  if (value !== value.toLowerCase()) return "use lower case";
  if (value.endsWith(".")) return "no trailing dot";
  if (value.includes("*")) return "wildcards are not supported";
  if (value.includes(":") || value.includes("/")) return "a domain has no scheme, port or path";
  const labels = value.split(".");
  if (labels.length < 2) return "it needs at least two labels (like app.example.com)";
  for (const label of labels) {
    if (label.length === 0) return "it has an empty label ('..')";
    if (label.length > 63) return `the label '${label.slice(0, 20)}...' is longer than 63 characters`;
    if (!/^[a-z0-9-]+$/.test(label)) return `the label '${label}' may only use a-z, 0-9 and '-'`;
    if (label.startsWith("-") || label.endsWith("-")) return `the label '${label}' starts or ends with '-'`;
  }
  if (/^\d+$/.test(labels[labels.length - 1]!)) return "an IP address is not a domain";
  return null;
}

/** How the host's proxy reaches and treats the app's containers. */
export const proxySpec = z
  .object({
    /** the port the app listens on inside its container */
    port: z.number().int().min(1).max(65535),
    /** GET this path until it answers 2xx before a container enters the route */
    health_path: z
      .string()
      .max(512)
      .regex(/^\/[A-Za-z0-9._~%/?=&+-]*$/, "must be a path like /health (letters, digits and . _ ~ % / ? = & + -)")
      .default("/"),
    /** how long a container taken out of the route may finish its requests before it is stopped */
    drain_seconds: z.number().int().min(0).max(3600).default(30),
    /** the longest the proxy waits for the app's answer */
    response_timeout_seconds: z.number().int().min(1).max(3600).default(60),
  })
  .strict();
export type ProxySpec = z.infer<typeof proxySpec>;

/** `auto`: ACME (Let's Encrypt by default); `internal`: the host's own CA (private hosts); `off`: http only. */
export const tlsMode = z.enum(["auto", "internal", "off"]);
export type TlsMode = z.infer<typeof tlsMode>;

/** The controller's ACME account, handed to agents with every routed deploy. */
export const acmeAccount = z
  .object({
    /** ACME directory URL */
    directory: z.string().url().max(2048),
    email: z.string().max(320).optional(),
  })
  .strict();
export type AcmeAccount = z.infer<typeof acmeAccount>;

/** Job spec fields of a routed deploy (every one optional: an app without domains keeps port mode). */
export const routingFields = {
  domains: z.array(domainName).max(100).optional(),
  proxy: proxySpec.optional(),
  /** containers per host */
  replicas: z.number().int().min(1).max(100).optional(),
  tls: tlsMode.optional(),
  acme: acmeAccount.optional(),
};

/** One upstream of a route as the agent reports it in heartbeats. */
export const routeUpstream = z.object({
  container: z.string().max(128),
  address: z.string().max(64),
  /** ready: takes traffic; drain: finishing its requests; maint: out of the route */
  state: z.string().max(16),
  /** the proxy's own check of the upstream: up, down, or unknown */
  health: z.string().max(16),
  release: z.string().max(128).optional(),
});

/** The certificate a host proxy serves for a route (tls auto or internal). */
export const routeCertificate = z.object({
  /** the issuer's common name (Let's Encrypt's R11, "deploybot internal CA") */
  issuer: z.string().max(256),
  /** ISO times: the end of its validity, and from when the agent orders a new one */
  validTo: z.string().max(64),
  renewalDueAt: z.string().max(64),
});

export const routeInfo = z.object({
  app: z.string().max(128),
  domains: z.array(z.string().max(253)).max(100),
  tls: z.string().max(16),
  upstreams: z.array(routeUpstream).max(200),
  /** absent: tls off, no certificate in place yet, or an agent older than this field */
  certificate: routeCertificate.optional(),
  /** why the agent's last certificate order for the route failed; gone once one succeeds */
  certificateError: z.string().max(1000).optional(),
});
export type RouteInfo = z.infer<typeof routeInfo>;
