export { createApp, type ControllerApp } from "./app";
export { loadConfig, testConfig, type Config } from "./config";
export { openDb, type Db } from "./db/client";
export { appsConfigFrom, loadAppsConfig, parseAppsConfig } from "./services/appsConfig";
export { startController } from "./server";
