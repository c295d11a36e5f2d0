import type { Context, Env, MiddlewareHandler, ValidationTargets } from "hono";
import { validator } from "hono/validator";
import type { z } from "zod";
import { ApiError, describeZodError } from "../lib/errors";

type Target = "json" | "query" | "param";

/** One validator for every input: the route reads only `c.req.valid(target)`. */
export function validate<T extends Target, S extends z.ZodType>(target: T, schema: S) {
  return validator(target, (value, _c: Context) => {
    const parsed = schema.safeParse(value);
    if (!parsed.success) {
      const { message, details } = describeZodError(parsed.error);
      throw new ApiError(400, target === "json" ? "invalid_body" : `invalid_${target}`, message, details);
    }
    return parsed.data as z.output<S>;
  }) as MiddlewareHandler<
    Env,
    string,
    { in: { [K in T]: z.input<S> }; out: { [K in T]: z.output<S> } } & Partial<Record<keyof ValidationTargets, unknown>>
  >;
}
