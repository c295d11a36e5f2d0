import type { Image, RemoteRef } from "@deploybot/protocol";
import { useEffect, useState } from "preact/hooks";
import { type ApiFailure, api, get } from "../lib/api";
import { navigate } from "../lib/router";
import type { App, Deployment } from "../lib/types";
import { Failure } from "./ui";

type Kind = "branch" | "tag" | "catalog" | "image";

const kinds: Array<[Kind, string]> = [
  ["branch", "A branch"],
  ["tag", "A tag"],
  ["catalog", "A built image"],
  ["image", "An image reference"],
];

/** The app's tags and branches from its own git remote (`git ls-remote` on the controller). */
function useRefs(app: string) {
  const [refs, setRefs] = useState<RemoteRef[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  useEffect(() => {
    get<{ refs: RemoteRef[] }>(`/v1/apps/${encodeURIComponent(app)}/refs`).then(
      (r) => setRefs(r.refs),
      (err: ApiFailure) => setError(`The app's tags and branches could not be read (${err.message}); type one instead.`),
    );
  }, [app]);
  return { refs, error };
}

/**
 * Deploy a branch, a tag of the app's remote, an image from the catalog, or any image
 * reference, to some or all of the app's hosts.
 */
export function DeployForm({ app }: { app: App }) {
  const [kind, setKind] = useState<Kind>("branch");
  const [branch, setBranch] = useState(app.branch);
  const [tag, setTag] = useState("");
  const [imageId, setImageId] = useState("");
  const [image, setImage] = useState("");
  const [images, setImages] = useState<Image[] | undefined>();
  const [hosts, setHosts] = useState<string[]>(app.hosts);
  const [error, setError] = useState<ApiFailure | undefined>();
  const [busy, setBusy] = useState(false);
  const refs = useRefs(app.name);
  const tags = refs.refs?.filter((r) => r.type === "tag") ?? [];
  const branches = refs.refs?.filter((r) => r.type === "branch") ?? [];

  useEffect(() => {
    const firstTag = refs.refs?.find((r) => r.type === "tag");
    if (kind === "tag" && !tag && firstTag) setTag(firstTag.name);
    if (kind === "catalog" && images === undefined) {
      setImages([]);
      get<{ images: Image[] }>(`/v1/images?app=${encodeURIComponent(app.name)}`).then(
        (r) => {
          const built = r.images.filter((i) => i.status === "success");
          setImages(built);
          if (built[0]) setImageId(built[0].id);
        },
        (err: ApiFailure) => setError(err),
      );
    }
  }, [kind, refs.refs, tag, images, app.name]);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    const what = kind === "image" ? { image: image.trim() } : kind === "catalog" ? { imageId } : { ref: (kind === "tag" ? tag : branch).trim() };
    try {
      const { deployment } = await api<{ deployment: Deployment }>("POST", "/v1/deployments", {
        app: app.name,
        ...what,
        ...(hosts.length !== app.hosts.length ? { hosts } : {}),
      });
      navigate(`/deployments/${deployment.id}`);
    } catch (err) {
      setError(err as ApiFailure);
      setBusy(false);
    }
  };

  const toggleHost = (h: string) => setHosts((old) => (old.includes(h) ? old.filter((x) => x !== h) : [...old, h]));

  return (
    <form class="deploy" onSubmit={submit} aria-labelledby="deploy-title">
      <h2 id="deploy-title">Deploy</h2>
      <fieldset>
        <legend>What to deploy</legend>
        {kinds.map(([k, label]) => (
          <label key={k} class="inline">
            <input type="radio" name="kind" value={k} checked={kind === k} onChange={() => setKind(k)} /> {label}
          </label>
        ))}
      </fieldset>
      {kind === "branch" ? (
        <p>
          <label for="deploy-branch">Branch</label>
          <input id="deploy-branch" value={branch} list="deploy-branches" onInput={(e) => setBranch((e.target as HTMLInputElement).value)} required />
          <datalist id="deploy-branches">
            {branches.map((b) => (
              <option key={b.name} value={b.name} />
            ))}
          </datalist>
        </p>
      ) : kind === "tag" ? (
        <p>
          <label for="deploy-tag">Tag</label>
          {tags.length > 0 ? (
            <select id="deploy-tag" value={tag} onChange={(e) => setTag((e.target as HTMLSelectElement).value)}>
              {tags.map((t) => (
                <option key={t.name} value={t.name}>
                  {t.name} ({t.sha.slice(0, 7)}
                  {t.commit?.date ? `, ${t.commit.date.slice(0, 10)}` : ""})
                </option>
              ))}
            </select>
          ) : (
            <input id="deploy-tag" value={tag} onInput={(e) => setTag((e.target as HTMLInputElement).value)} required placeholder={refs.refs ? "no tags: type one" : "v1.2.3"} />
          )}
          {refs.error ? <span class="small dim block">{refs.error}</span> : null}
        </p>
      ) : kind === "catalog" ? (
        <p>
          <label for="deploy-imageid">Image</label>
          {images && images.length > 0 ? (
            <select id="deploy-imageid" value={imageId} onChange={(e) => setImageId((e.target as HTMLSelectElement).value)}>
              {images.map((i) => (
                <option key={i.id} value={i.id}>
                  {i.tag} ({i.ref})
                </option>
              ))}
            </select>
          ) : (
            <span class="dim">
              {images === undefined ? "Loading…" : "No built image of this app yet. "}
              <a href={`/images?app=${encodeURIComponent(app.name)}`}>Build one on the Images page</a>.
            </span>
          )}
        </p>
      ) : (
        <p>
          <label for="deploy-image">Image</label>
          <input id="deploy-image" value={image} onInput={(e) => setImage((e.target as HTMLInputElement).value)} required placeholder={`${app.image ?? "registry/app"}:tag`} class="wide" />
        </p>
      )}
      {app.hosts.length > 1 ? (
        <fieldset>
          <legend>On hosts</legend>
          {app.hosts.map((h) => (
            <label key={h} class="inline">
              <input type="checkbox" checked={hosts.includes(h)} onChange={() => toggleHost(h)} /> {h}
            </label>
          ))}
        </fieldset>
      ) : null}
      <Failure error={error} />
      <button type="submit" disabled={busy || hosts.length === 0 || (kind === "catalog" && !imageId)}>
        {busy ? "Starting…" : `Deploy ${app.name}`}
      </button>
    </form>
  );
}
