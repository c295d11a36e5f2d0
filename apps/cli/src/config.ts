import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";
import { parseControllerUrls } from "@deploybot/protocol";
import { CliError, ExitCode, usageError } from "./client";

/** `url` may list several controllers, comma-separated (see ApiClient) */
const storedConfig = z.object({
  url: z.string().refine((v) => parseControllerUrls(v).length > 0 && parseControllerUrls(v).every((u) => URL.canParse(u)), "not a URL list"),
  token: z.string().min(1),
});
export type StoredConfig = z.infer<typeof storedConfig>;

export type Env = Record<string, string | undefined>;

/** `$XDG_CONFIG_HOME/deploybot/config.json`, else `~/.config/deploybot/config.json`. */
export function configFile(env: Env): string {
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), ".config");
  return join(base, "deploybot", "config.json");
}

export function readStoredConfig(env: Env): StoredConfig | undefined {
  const file = configFile(env);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new CliError(ExitCode.auth, `cannot read ${file}: ${(err as Error).message}`);
  }
  try {
    return storedConfig.parse(JSON.parse(text));
  } catch {
    throw new CliError(ExitCode.auth, `${file} is not a valid deploybot config; run 'deploybot login' again`);
  }
}

/** The controller URLs of `value` (comma-separated), each http:// or https://; otherwise a usage error naming `source`. */
export function controllerUrls(value: string, source: string): string[] {
  const urls = parseControllerUrls(value);
  if (urls.length === 0) throw usageError(`${source} '${value}' is not a URL (try http://HOST:8080)`);
  for (const url of urls) {
    if (!URL.canParse(url)) throw usageError(`${source} '${url}' is not a URL (try http://HOST:8080)`);
    const { protocol } = new URL(url);
    if (protocol !== "http:" && protocol !== "https:") throw usageError(`${source} must be http:// or https://, got '${url}'`);
  }
  return urls;
}

/** Where to talk to and as whom: DEPLOYBOT_URL / DEPLOYBOT_TOKEN win over the stored login. */
export function resolveCredentials(env: Env): StoredConfig {
  const envUrl = env.DEPLOYBOT_URL || undefined;
  // checked like login --url: "notaurl" was exit 5, "cannot reach the controller: ERR_INVALID_URL"
  if (envUrl) controllerUrls(envUrl, "DEPLOYBOT_URL");
  const envToken = env.DEPLOYBOT_TOKEN || undefined;
  const stored = envUrl && envToken ? undefined : readStoredConfig(env);
  const url = envUrl ?? stored?.url;
  const token = envToken ?? stored?.token;
  if (!url || !token) {
    const missing = !url && !token ? "no controller URL and no token" : !url ? "no controller URL" : "no token";
    throw new CliError(ExitCode.auth, `not logged in (${missing}): run 'deploybot login --url URL --token TOKEN' or set DEPLOYBOT_URL and DEPLOYBOT_TOKEN`);
  }
  return { url, token };
}

/** Writes through a temp file so a crash never leaves half a config; the token makes it 0600. */
export function saveStoredConfig(env: Env, config: StoredConfig): string {
  const file = configFile(env);
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}
