import Dockerode from "dockerode";

/** The local engine: dockerode/docker-modem read DOCKER_HOST themselves; the default is the socket. */
export const connectDocker = (): Dockerode => new Dockerode();
