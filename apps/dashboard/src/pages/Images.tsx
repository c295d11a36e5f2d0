import type { Image, RemoteRef } from "@deploybot/protocol";
import { useEffect, useState } from "preact/hooks";
import { Badge, Empty, Failure, GridTable, JobLink, Loading, Page, shortImage, Time } from "../components/ui";
import { type ApiFailure, api, get, qs } from "../lib/api";
import { useResource } from "../lib/live";
import { navigate, useLocation } from "../lib/router";
import { useCan, useSession } from "../lib/session";
import type { App, Deployment } from "../lib/types";

/** Build an app at a tag of its remote (or a branch or commit) into the catalog, without deploying. */
function BuildForm({ apps, app, onBuilt }: { apps: string[]; app: string; onBuilt: () => void }) {
  const [chosen, setChosen] = useState(app || apps[0] || "");
  const [refs, setRefs] = useState<RemoteRef[] | undefined>();
  const [refsError, setRefsError] = useState<string | undefined>();
  const [tag, setTag] = useState("");
  const [error, setError] = useState<ApiFailure | undefined>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    setRefs(undefined);
    setRefsError(undefined);
    setTag("");
    if (!chosen) return;
    get<{ refs: RemoteRef[] }>(`/v1/apps/${encodeURIComponent(chosen)}/refs?type=tag`).then(
      (r) => {
        setRefs(r.refs);
        if (r.refs[0]) setTag(r.refs[0].name);
      },
      (err: ApiFailure) => setRefsError(`Tags could not be read: ${err.message}`),
    );
  }, [chosen]);

  const build = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      await api("POST", "/v1/images", { app: chosen, tag: tag.trim() });
      onBuilt();
    } catch (err) {
      setError(err as ApiFailure);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="deploy" onSubmit={build} aria-labelledby="build-title">
      <h2 id="build-title">Build an image</h2>
      <p class="dim small">Builds and pushes the app at a tag of its git remote, without deploying it. Deploy it from the list below once it is built.</p>
      <div class="filters">
        <label for="b-app">App</label>
        <select id="b-app" value={chosen} onChange={(e) => setChosen((e.target as HTMLSelectElement).value)}>
          {apps.map((a) => (
            <option key={a}>{a}</option>
          ))}
        </select>
        <label for="b-tag">Tag</label>
        {refs && refs.length > 0 ? (
          <select id="b-tag" value={tag} onChange={(e) => setTag((e.target as HTMLSelectElement).value)}>
            {refs.map((r) => (
              <option key={r.name} value={r.name}>
                {r.name} ({r.sha.slice(0, 7)})
              </option>
            ))}
          </select>
        ) : (
          <input id="b-tag" value={tag} required onInput={(e) => setTag((e.target as HTMLInputElement).value)} placeholder={refs ? "no tags yet: type one" : "v1.2.3"} />
        )}
        <button type="submit" disabled={busy || !chosen || !tag}>
          {busy ? "Queueing…" : "Build image"}
        </button>
      </div>
      {refsError ? <p class="small dim">{refsError}</p> : null}
      <Failure error={error} />
    </form>
  );
}

/** The images catalog: what was built, its status and build log, and a deploy for each built one. */
export function ImagesPage() {
  const { query } = useLocation();
  const app = query.get("app") ?? "";
  const session = useSession();
  const mayDeploy = useCan("deploy");
  const mayDeployApp = (a: string) => mayDeploy && (!session.apps || session.apps.includes(a));
  const apps = useResource(() => get<{ apps: App[] }>("/v1/apps").then((r) => r.apps.map((a) => a.name)), []);
  const { data, error, reload } = useResource(() => get<{ images: Image[] }>(`/v1/images${qs({ app, limit: 200 })}`).then((r) => r.images), [app]);
  const [failure, setFailure] = useState<ApiFailure | undefined>();

  const deploy = async (img: Image) => {
    setFailure(undefined);
    try {
      const { deployment } = await api<{ deployment: Deployment }>("POST", "/v1/deployments", { app: img.app, imageId: img.id });
      navigate(`/deployments/${deployment.id}`);
    } catch (err) {
      setFailure(err as ApiFailure);
    }
  };
  const remove = async (img: Image) => {
    setFailure(undefined);
    try {
      await api("DELETE", `/v1/images/${encodeURIComponent(img.id)}`);
      reload();
    } catch (err) {
      setFailure(err as ApiFailure);
    }
  };

  return (
    <Page title="Images">
      {mayDeploy && apps.data?.some(mayDeployApp) ? <BuildForm apps={apps.data.filter(mayDeployApp)} app={app} onBuilt={reload} /> : null}
      <div class="filters">
        <label for="i-app">Show images of</label>
        <select id="i-app" value={app} onChange={(e) => navigate(`/images${qs({ app: (e.target as HTMLSelectElement).value })}`)}>
          <option value="">all apps</option>
          {(apps.data ?? []).map((a) => (
            <option key={a}>{a}</option>
          ))}
        </select>
      </div>
      <Failure error={error ?? failure} />
      {!data ? (
        error ? null : <Loading what="images" />
      ) : data.length === 0 ? (
        <Empty>No image in the catalog{app ? ` for ${app}` : ""} yet.</Empty>
      ) : (
        <GridTable>
          <thead>
            <tr>
              <th scope="col">App</th>
              <th scope="col">Tag</th>
              <th scope="col">Built from</th>
              <th scope="col">Status</th>
              <th scope="col">Build log</th>
              <th scope="col">Created</th>
              {mayDeploy ? <th scope="col">Action</th> : null}
            </tr>
          </thead>
          <tbody>
            {data.map((img) => (
              <tr key={img.id} data-testid={`image-${img.app}-${img.tag}`}>
                <td>
                  <a href={`/apps/${encodeURIComponent(img.app)}`}>{img.app}</a>
                </td>
                <th scope="row" class="mono" title={img.pullRef ?? img.imageTag}>
                  {img.tag}
                </th>
                <td class="mono small">
                  {img.ref}
                  {img.sha ? <span class="dim"> {img.sha.slice(0, 7)}</span> : null}
                </td>
                <td>
                  <Badge status={img.status} />
                  {img.error ? <div class="small err-text">{img.error.slice(0, 200)}</div> : null}
                  {img.digest ? <div class="small dim mono">{shortImage(img.pullRef ?? "")}</div> : null}
                </td>
                <td>
                  <JobLink id={img.buildJobId} />
                </td>
                <td>
                  <Time iso={img.createdAt} />
                </td>
                {mayDeploy ? (
                  <td>
                    {!mayDeployApp(img.app) ? null : img.status === "success" ? (
                      <button type="button" onClick={() => deploy(img)}>
                        Deploy {img.app} {img.tag}
                      </button>
                    ) : null}{" "}
                    {mayDeployApp(img.app) && img.status !== "pending" && img.status !== "building" ? (
                      <button type="button" class="link" onClick={() => remove(img)}>
                        Remove {img.tag}
                      </button>
                    ) : null}
                  </td>
                ) : null}
              </tr>
            ))}
          </tbody>
        </GridTable>
      )}
    </Page>
  );
}
