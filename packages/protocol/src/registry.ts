/**
 * A registry as images name it: `https://Reg.example.test:5000/team/` → `reg.example.test:5000/team`
 * (no scheme, no trailing slash, lower case as Docker requires of repositories). Applied once,
 * where a registry URL enters (the controller's config); everything after reads the result.
 */
export function registryPrefix(url: string): string {
  return url
    .trim()
    .replace(/^[a-z][a-z0-9+.-]*:\/\//i, "")
    .replace(/\/+$/, "")
    .toLowerCase();
}

/** The repository an app's images are pushed to and pulled from, without a tag. */
export function appImageRepository(app: { name: string; image?: string | undefined }, registry: { url: string } | undefined): string | undefined {
  return app.image ?? (registry ? `${registry.url}/${app.name}` : undefined);
}
