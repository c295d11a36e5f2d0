import type { z } from "zod";

export type Auth = "public" | "join" | "agent" | "metrics" | "read" | "deploy" | "admin";
export type Method = "get" | "post" | "put" | "patch" | "delete";

/** One documented operation; `body`, `query` and `response` are the schemas the route uses. */
export interface ApiRoute {
  method: Method;
  /** OpenAPI style: /v1/jobs/{jobId} */
  path: string;
  summary: string;
  auth: Auth;
  query?: z.ZodType;
  body?: z.ZodType;
  /** the success body (JSON); `contentType` for anything else */
  response?: z.ZodType;
  contentType?: string;
  /** status -> what it means */
  responses: Record<number, string>;
}
