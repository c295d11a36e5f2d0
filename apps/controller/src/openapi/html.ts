import { authText, jsonSchema } from "./document";
import type { ApiRoute } from "./types";

type Schema = Record<string, unknown>;

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

/** A JSON Schema as a short TypeScript-like shape: `{ repo: string, ref: string, timeoutSeconds?: integer }`. */
export function shape(schema: Schema, indent = ""): string {
  const inner = `${indent}  `;
  if (Array.isArray(schema.anyOf ?? schema.oneOf)) return ((schema.anyOf ?? schema.oneOf) as Schema[]).map((s) => shape(s, indent)).join(" | ");
  if (Array.isArray(schema.enum)) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if ("const" in schema) return JSON.stringify(schema.const);
  const type = schema.type;
  if (Array.isArray(type)) return type.join(" | ");
  if (type === "array") return `${shape((schema.items as Schema) ?? {}, indent)}[]`;
  if (type === "object") {
    const props = Object.entries((schema.properties as Record<string, Schema>) ?? {});
    const required = (schema.required as string[]) ?? [];
    const extra = schema.additionalProperties;
    if (props.length === 0) return extra && typeof extra === "object" ? `{ [key: string]: ${shape(extra as Schema, indent)} }` : "object";
    const lines = props.map(([k, v]) => {
      const note = [v.default !== undefined ? `default ${JSON.stringify(v.default)}` : "", typeof v.description === "string" ? v.description : ""].filter(Boolean).join("; ");
      return `${inner}${k}${required.includes(k) ? "" : "?"}: ${shape(v, inner)}${note ? `  // ${note}` : ""}`;
    });
    return `{\n${lines.join("\n")}\n${indent}}`;
  }
  return typeof type === "string" ? type : "any";
}

function operation(route: ApiRoute): string {
  const block = (title: string, text: string) => `<h3>${title}</h3><pre>${escapeHtml(text)}</pre>`;
  const parts = [
    `<h2 id="${escapeHtml(route.method + route.path)}"><span class="m ${route.method}">${route.method.toUpperCase()}</span> <code>${escapeHtml(route.path)}</code></h2>`,
    `<p>${escapeHtml(route.summary)}</p>`,
    `<p class="auth">Auth: <b>${route.auth}</b> — ${escapeHtml(authText[route.auth])}</p>`,
  ];
  if (route.query) parts.push(block("Query", shape(jsonSchema(route.query, "input"))));
  if (route.body) parts.push(block("Request body (JSON)", shape(jsonSchema(route.body, "input"))));
  if (route.response) parts.push(block("Response body", shape(jsonSchema(route.response, "output"))));
  if (route.contentType) parts.push(`<p>Response content type: <code>${escapeHtml(route.contentType)}</code></p>`);
  const rows = Object.entries(route.responses).map(([status, text]) => `<tr><td>${status}</td><td>${escapeHtml(text)}</td></tr>`);
  parts.push(`<h3>Responses</h3><table>${rows.join("")}</table>`);
  return `<section>${parts.join("\n")}</section>`;
}

/** A self-contained page (no script, no external asset) listing every operation. */
export function docsPage(routes: ApiRoute[]): string {
  const index = routes.map((r) => `<li><a href="#${escapeHtml(r.method + r.path)}">${r.method.toUpperCase()} ${escapeHtml(r.path)}</a> <small>${r.auth}</small></li>`);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>deploybot API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#222}
code,pre{font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}pre{background:#f5f5f5;padding:.6rem;overflow:auto;border-radius:4px}
section{border-top:1px solid #ddd;padding:.5rem 0}h2{margin:.6rem 0 .2rem;font-size:1.17rem}h3{margin:.6rem 0 .2rem;font-size:.9rem}
.m{display:inline-block;min-width:4.5rem;text-align:center;color:#fff;border-radius:3px;font-size:.8rem;padding:1px 4px}
.get{background:#1d6a99}.post{background:#2e7d32}.delete{background:#b03030}.put,.patch{background:#8a5a00}
.auth{color:#555}table{border-collapse:collapse}td{border:1px solid #ddd;padding:2px 8px}ul{columns:2}
</style></head><body>
<main>
<h1>deploybot API (v1)</h1>
<p>Tokens go in <code>Authorization: Bearer …</code>. Every error is <code>{"error":{"code","message","details?"}}</code>. Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<ul>${index.join("")}</ul>
${routes.map(operation).join("\n")}
</main>
</body></html>`;
}
