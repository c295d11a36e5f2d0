/**
 * With several controllers the drainer runs in one of them, and the wake-ups its signal
 * consequences make are needed in all: `signals: "follower"` leaves them to each controller's
 * outbox follower, which calls applySignals for every committed row.
 */
import pino from "pino";
import { expect, test } from "vitest";
import { createApp } from "../src/app";
import { testConfig } from "../src/config";
import { parseAppsConfig } from "../src/services/appsConfig";
import { Drainer } from "../src/services/drainer";
import type { OutboxEvent } from "../src/services/outbox";
import { APPS_YAML } from "./appsYaml";
import { openTestDb } from "./fixture";

test('signals: "follower" applies db consequences but leaves the wake-ups to applySignals; "inline" runs both', async () => {
  const config = testConfig();
  const apps = parseAppsConfig(APPS_YAML, "apps.yaml");
  const ran: string[] = [];
  // each on its own database: the drainer's cursor is stored there
  const make = async (signals: "inline" | "follower") => {
    const { db } = await openTestDb();
    const { deps, services } = await createApp({ db, config, logger: pino({ level: "silent" }), apps: () => apps, secretKey: config.secretKey! });
    services.drainer.stop();
    const drainer = new Drainer(deps, { signals });
    drainer.register({ name: "record", types: ["test.happened"], kind: "db", apply: (e) => void ran.push(`${signals} db ${e.id}`) });
    drainer.register({ name: "wake", types: ["test.happened"], kind: "signal", apply: (e) => void ran.push(`${signals} signal ${e.id}`) });
    const id = await db.write(async () => deps.outbox.append("test.happened", { app: null, subject: null }, { n: 1 }));
    return { db, deps, drainer, id };
  };

  const follower = await make("follower");
  await follower.drainer.drain();
  expect(ran).toEqual([`follower db ${follower.id}`]);
  follower.drainer.applySignals((await follower.deps.outbox.get(follower.id)) as OutboxEvent);
  expect(ran).toEqual([`follower db ${follower.id}`, `follower signal ${follower.id}`]);

  ran.length = 0;
  const inline = await make("inline");
  await inline.drainer.drain();
  expect(ran).toEqual([`inline db ${inline.id}`, `inline signal ${inline.id}`]);
});
