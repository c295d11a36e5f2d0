/** The host proxy: HAProxy driven through its runtime API, with the agent's route table as truth. */
export { HostProxy, type HostProxyOptions, type RouteSettings } from "./hostProxy";
export type { ProxySupervision } from "./haproxyProcess";
export type { AppRoute, Upstream } from "./routeTable";
