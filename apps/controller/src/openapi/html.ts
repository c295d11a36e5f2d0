import type { OpenApiDocument } from "./document";

type Schema = Record<string, unknown>;
type Operation = {
  summary?: string;
  description?: string;
  tags?: string[];
  "x-deploybot-auth"?: string;
  parameters?: { name: string; in: string; required?: boolean; description?: string; schema?: Schema }[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
  responses?: Record<string, { description?: string; content?: Record<string, { schema?: Schema }> }>;
};

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const refName = (ref: string) => ref.split("/").pop() ?? ref;
const anchor = (s: string) => s.replace(/[^A-Za-z0-9_-]/g, "-");

/** A JSON Schema as a short TypeScript-like shape: `{ repo: string, ref: string, timeoutSeconds?: integer }`. */
export function shape(schema: Schema, indent = ""): string {
  const inner = `${indent}  `;
  if (typeof schema.$ref === "string") return refName(schema.$ref);
  const union = (schema.anyOf ?? schema.oneOf) as Schema[] | undefined;
  if (Array.isArray(union)) return union.map((s) => shape(s, indent)).join(" | ");
  if (Array.isArray(schema.allOf)) return (schema.allOf as Schema[]).map((s) => shape(s, indent)).join(" & ");
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if ("const" in schema) return JSON.stringify(schema.const);
  const type = schema.type;
  if (Array.isArray(type)) return type.map((t) => shape({ ...schema, type: t }, indent)).join(" | ");
  if (type === "array") return `${shape((schema.items as Schema) ?? {}, indent)}[]`;
  if (type === "object" || schema.properties) {
    const props = Object.entries((schema.properties as Record<string, Schema>) ?? {});
    const required = (schema.required as string[]) ?? [];
    const extra = schema.additionalProperties;
    if (props.length === 0) return extra && typeof extra === "object" ? `{ [key: string]: ${shape(extra as Schema, indent)} }` : "object";
    const lines = props.map(([k, v]) => {
      const note = [v.default !== undefined ? `default ${JSON.stringify(v.default)}` : "", typeof v.description === "string" ? v.description : ""]
        .filter(Boolean)
        .join("; ");
      return `${inner}${k}${required.includes(k) ? "" : "?"}: ${shape(v, inner)}${note ? `  // ${note}` : ""}`;
    });
    return `{\n${lines.join("\n")}\n${indent}}`;
  }
  return typeof type === "string" ? type : "any";
}

/** Escaped shape text with the names of shared schemas linked to their definitions. */
function shapeHtml(schema: Schema, names: Set<string>): string {
  return escapeHtml(shape(schema)).replace(/\b[A-Z][A-Za-z]+\b/g, (word) => (names.has(word) ? `<a href="#schema-${word}">${word}</a>` : word));
}

function operationHtml(method: string, path: string, op: Operation, names: Set<string>): string {
  const block = (title: string, schema: Schema) => `<h4>${title}</h4><pre>${shapeHtml(schema, names)}</pre>`;
  const id = anchor(method + path);
  const parts = [
    `<h3 id="${id}"><span class="m ${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code></h3>`,
    `<p>${escapeHtml(op.summary ?? "")}</p>`,
  ];
  if (op.description) parts.push(...op.description.split("\n\n").map((p) => `<p class="auth">${escapeHtml(p)}</p>`));
  const params = op.parameters ?? [];
  if (params.length > 0) {
    const rows = params.map(
      (p) =>
        `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${p.in}</td><td>${p.required ? "required" : "optional"}</td><td><code>${escapeHtml(shape(p.schema ?? {}))}</code></td><td>${escapeHtml(p.description ?? "")}</td></tr>`,
    );
    parts.push(`<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th></th><th>type</th><th></th></tr>${rows.join("")}</table>`);
  }
  for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) parts.push(block(`Request body (${escapeHtml(type)})`, media.schema ?? {}));
  const rows = Object.entries(op.responses ?? {}).map(([status, r]) => `<tr><td>${status}</td><td>${escapeHtml(r.description ?? "")}</td></tr>`);
  for (const [status, r] of Object.entries(op.responses ?? {})) {
    if (Number(status) >= 400) continue;
    for (const [type, media] of Object.entries(r.content ?? {})) {
      parts.push(type === "application/json" ? block(`Response ${status}`, media.schema ?? {}) : `<p>Response ${status}: <code>${escapeHtml(type)}</code></p>`);
    }
  }
  parts.push(`<h4>Responses</h4><table><tr><th>status</th><th>meaning</th></tr>${rows.join("")}</table>`);
  return `<section>${parts.join("\n")}</section>`;
}

/**
 * A self-contained page (no script, no external asset) of every operation in `doc`, grouped by
 * tag, then every shared schema. Colours keep 4.5:1 against white (WCAG AA); headings go
 * h1 > h2 (tag) > h3 (operation) > h4 without a skipped level.
 */
export function docsPage(doc: OpenApiDocument): string {
  const operations = Object.entries(doc.paths ?? {}).flatMap(([path, item]) =>
    Object.entries(item as Record<string, Operation>).map(([method, op]) => ({ method, path, op, tag: op.tags?.[0] ?? "other" })),
  );
  const names = new Set(Object.keys(doc.components?.schemas ?? {}));
  const tags = (doc.tags ?? []).map((t) => ({ name: t.name, description: t.description ?? "" }));
  const index = operations.map(
    ({ method, path, op }) =>
      `<li><a href="#${anchor(method + path)}">${method.toUpperCase()} ${escapeHtml(path)}</a> <small>${escapeHtml(op["x-deploybot-auth"] ?? "")}</small></li>`,
  );
  const groups = tags.map(({ name, description }) => {
    const ops = operations.filter((o) => o.tag === name).map((o) => operationHtml(o.method, o.path, o.op, names));
    return `<h2 id="tag-${anchor(name)}">${escapeHtml(name)}</h2>\n<p>${escapeHtml(description)}</p>\n${ops.join("\n")}`;
  });
  const schemas = Object.entries(doc.components?.schemas ?? {}).map(
    ([name, schema]) => `<section><h3 id="schema-${anchor(name)}">${escapeHtml(name)}</h3><pre>${shapeHtml(schema as Schema, names)}</pre></section>`,
  );
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>deploybot API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}pre{background:#f5f5f5;padding:.6rem;overflow:auto;border-radius:4px}
section{border-top:1px solid #ddd;padding:.5rem 0}h2{margin:1.5rem 0 .2rem;border-bottom:2px solid #222}h3{margin:.6rem 0 .2rem}h4{margin:.6rem 0 .2rem;font-size:.9rem}
.m{display:inline-block;min-width:4.5rem;text-align:center;color:#fff;border-radius:3px;font-size:.8rem;padding:1px 4px}
.get{background:#1d6a99}.post{background:#2e7d32}.delete{background:#b03030}.put,.patch{background:#8a5a00}
a{color:#1d5f8a}.auth{color:#555}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}ul{columns:2}
</style></head><body>
<main>
<h1>deploybot API (v1)</h1>
<p>Tokens go in <code>Authorization: Bearer …</code>. Every error is <code>{"error":{"code","message","details?"}}</code>. Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<nav aria-label="Operations"><ul>${index.join("")}</ul></nav>
${groups.join("\n")}
<h2 id="schemas">Schemas</h2>
${schemas.join("\n")}
</main>
</body></html>`;
}
