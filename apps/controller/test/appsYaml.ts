/** The apps every controller test (and the bench) runs with; no test framework imports here. */
export const APPS_YAML = `
apps:
  - name: web
    repo: acme/web
    url: https://git.example.test/acme/web.git
    hosts: [web-1]
    build: { dockerfile: Dockerfile, context: . }
    run:
      ports: ["8080:80"]
      healthcheck: { path: /health, port: 80 }
  - name: api
    repo: acme/api
    url: https://git.example.test/acme/api.git
    hosts: [api-1, api-2]
    image: 127.0.0.1:5000/acme/api
    run:
      env: { MODE: blue }
      secrets: [DATABASE_URL]
`;
