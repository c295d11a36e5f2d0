import { fails, guards, newRouter, route } from "../openapi/route";
import type { Services } from "../services";

/** The database as a whole: a consistent, checked backup for `deploybot db backup`. */
export function dbRoutes(s: Services) {
  const { admin } = guards(s);
  return newRouter().openapi(
    route({
      method: "get",
      path: "/backup",
      guard: admin,
      summary: "A consistent backup of the controller's SQLite database, taken while it runs and checked with integrity_check before it is sent",
      description:
        "The copy is made (VACUUM INTO on a read-only connection, off the event loop) before the first byte is sent, so the answer may take a while on a large database. " +
        "Secrets in it are encrypted with the controller's secret key, which is not part of the backup.",
      responses: {
        200: {
          description: "the SQLite file (content-length set; x-deploybot-integrity: ok)",
          content: { "application/vnd.sqlite3": { schema: { type: "string", format: "binary" } } },
        },
        ...fails({ 409: "the database is in memory: nothing to back up", 500: "the copy failed its integrity check (nothing was sent)" }),
      },
    }),
    async (c) => {
      const backup = await s.backups.openForDownload();
      return c.body(backup.stream, 200, {
        "content-type": "application/vnd.sqlite3",
        "content-length": String(backup.bytes),
        "content-disposition": `attachment; filename="${backup.name}"`,
        "cache-control": "no-store",
        "x-deploybot-integrity": "ok",
      });
    },
  );
}
