import { setupServer } from "msw/node";
import { afterAll, afterEach, beforeAll } from "vitest";
import { handlers, seen } from "./handlers";

export const server = setupServer(...handlers);

/** Any request to a host or path the handlers do not know fails the test. */
export function useFakeGitHub() {
  beforeAll(() => server.listen({ onUnhandledRequest: "error" }));
  afterEach(() => {
    server.resetHandlers();
    seen.length = 0;
  });
  afterAll(() => server.close());
}
