/**
 * Several controllers in one setting (the agent's and the CLI's `DEPLOYBOT_URL`, `login --url`):
 * comma-separated, spaces and trailing slashes dropped, in the order they are tried.
 */
export function parseControllerUrls(value: string): string[] {
  return value
    .split(",")
    .map((u) => u.trim().replace(/\/+$/, ""))
    .filter(Boolean);
}

/**
 * Answers that say "this controller cannot serve you now, another may": a load balancer or proxy
 * in front of a dead, restarting or overloaded controller. A 500 or a 4xx is the controller's own
 * answer (on one database every controller gives the same one), so it is never a reason to move.
 */
export const FAILOVER_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);
