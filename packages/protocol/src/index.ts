export * from "./refs";
export * from "./schemas";
export * from "./deployments";
export * from "./runs";
export * from "./images";
export * from "./routing";
export * from "./events";
export * from "./appState";
