export interface AgentManifest {
  version: string;
  node: string;
  files: Record<string, { sha256: string; size: number }>;
}
export const AGENT_FILES: string[];
export const defaultAgentDist: string;
export function buildAgentDist(opts?: { outDir?: string; version?: string }): Promise<AgentManifest>;
export function currentAgentDist(outDir?: string): Promise<AgentManifest>;
export const sources: string[];
