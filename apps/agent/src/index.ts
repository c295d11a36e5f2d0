export { loadAgentConfig, type AgentConfig } from "./config";
export { AgentDaemon } from "./daemon";
