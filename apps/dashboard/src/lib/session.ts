import type { TokenScope } from "@deploybot/protocol";
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import { can } from "./api";

export interface SessionInfo {
  tokenId: string;
  scope: TokenScope;
  signOut: () => void;
}

export const SessionContext = createContext<SessionInfo | null>(null);

export function useSession(): SessionInfo {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in page");
  return s;
}

/** Whether the signed-in token may do what needs `scope` (the UI hides what it may not). */
export function useCan(scope: TokenScope): boolean {
  return can(useContext(SessionContext)?.scope, scope);
}
