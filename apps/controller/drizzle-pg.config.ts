import { defineConfig } from "drizzle-kit";

// The PostgreSQL migrations, generated from the same schema.ts through src/db/pgSchema.ts.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/db/pgSchema.ts",
  out: "./drizzle-pg",
});
