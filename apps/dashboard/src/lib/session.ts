import type { TokenScope } from "@deploybot/protocol";
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import { can } from "./api";

export interface SessionInfo {
  tokenId: string;
  scope: TokenScope;
  /** the apps a token is limited to (null: every app), on controllers that limit tokens to apps */
  apps: string[] | null;
  signOut: () => void;
}

export const SessionContext = createContext<SessionInfo | null>(null);

export function useSession(): SessionInfo {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in page");
  return s;
}

/**
 * Whether the signed-in token may do what needs `scope`, on `app` when one is named (the UI
 * hides what it may not; the API refuses it anyway).
 */
export function useCan(scope: TokenScope, app?: string): boolean {
  const s = useContext(SessionContext);
  if (!can(s?.scope, scope)) return false;
  return app === undefined || !s?.apps || s.apps.includes(app);
}
