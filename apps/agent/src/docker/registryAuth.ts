import type { RegistryCredentials } from "@deploybot/protocol";

export interface AuthConfig {
  username: string;
  password: string;
  serveraddress: string;
}

/**
 * The registry host of an image reference, after Docker's own rule: the first path component
 * is a registry when it has a '.' or ':' or is "localhost"; otherwise the image is on Docker Hub.
 */
export function registryHost(image: string): string {
  const slash = image.indexOf("/");
  if (slash === -1) return "docker.io";
  const first = image.slice(0, slash);
  return first.includes(".") || first.includes(":") || first === "localhost" ? first : "docker.io";
}

/** "https://127.0.0.1:5000/" and "127.0.0.1:5000" name the same registry. */
export const normalizeRegistry = (url: string): string =>
  url
    .replace(/^[a-z]+:\/\//i, "")
    .replace(/\/.*$/, "")
    .replace(/^(index\.)?docker\.io$/, "docker.io")
    .toLowerCase();

/** Job credentials win when they match the image's registry; then the agent's own list. */
export function authFor(image: string, jobRegistry: RegistryCredentials | undefined, agentRegistries: RegistryCredentials[] = []): AuthConfig | undefined {
  const host = registryHost(image).toLowerCase();
  const match = [jobRegistry, ...agentRegistries].find((r) => r !== undefined && normalizeRegistry(r.url) === host);
  return match ? { username: match.username, password: match.password, serveraddress: host } : undefined;
}

/** Splits "host:5000/app:tag" into repository and tag (a ':' after the last '/' is the tag). */
export function splitImageRef(ref: string): { repo: string; tag: string | undefined } {
  const withoutDigest = ref.split("@")[0] ?? ref;
  const colon = withoutDigest.lastIndexOf(":");
  if (colon > withoutDigest.lastIndexOf("/")) return { repo: withoutDigest.slice(0, colon), tag: withoutDigest.slice(colon + 1) };
  return { repo: withoutDigest, tag: undefined };
}
