/** Takes the advisory lock `key` for cluster.test.ts, says "held", then idles until killed. argv: url, key. */
import { PgLeader } from "../../src/services/pgCluster";

const [url, key] = process.argv.slice(2) as [string, string];
const leader = new PgLeader(url, Number(key), "test");
while (!(await leader.holds())) await new Promise((r) => setTimeout(r, 100));
process.stdout.write("held\n");
setInterval(() => void leader.holds(), 1000);
