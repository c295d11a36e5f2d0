// One redactor for the agent and the controller: what leaves a host and what is stored are
// masked by the same rules.
export { REDACTED, Redactor } from "@deploybot/protocol/redact";
