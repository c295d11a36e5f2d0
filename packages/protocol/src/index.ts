export * from "./refs";
export * from "./schemas";
