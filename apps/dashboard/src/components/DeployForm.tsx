import { useState } from "preact/hooks";
import { type ApiFailure, api, get } from "../lib/api";
import { navigate } from "../lib/router";
import type { App, Deployment } from "../lib/types";
import { Failure } from "./ui";

type Kind = "branch" | "tag" | "image";

/** Deploy a branch, a tag from GitHub's tag list, or an image, to some or all of the app's hosts. */
export function DeployForm({ app }: { app: App }) {
  const [kind, setKind] = useState<Kind>("branch");
  const [branch, setBranch] = useState(app.branch);
  const [tag, setTag] = useState("");
  const [image, setImage] = useState("");
  const [tags, setTags] = useState<string[] | undefined>();
  const [tagsError, setTagsError] = useState<string | undefined>();
  const [hosts, setHosts] = useState<string[]>(app.hosts);
  const [error, setError] = useState<ApiFailure | undefined>();
  const [busy, setBusy] = useState(false);

  const pick = (k: Kind) => {
    setKind(k);
    if (k === "tag" && tags === undefined) {
      setTags([]);
      get<{ tags: Array<{ name: string }> }>(`/v1/github/tags?repo=${encodeURIComponent(app.repo)}`).then(
        (r) => {
          setTags(r.tags.map((t) => t.name));
          if (r.tags[0]) setTag(r.tags[0].name);
        },
        (err: ApiFailure) => setTagsError(`GitHub's tag list could not be read (${err.message}); type the tag instead.`),
      );
    }
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    const what = kind === "image" ? { image: image.trim() } : { ref: (kind === "tag" ? tag : branch).trim() };
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
        {(["branch", "tag", "image"] as const).map((k) => (
          <label key={k} class="inline">
            <input type="radio" name="kind" value={k} checked={kind === k} onChange={() => pick(k)} /> {k === "branch" ? "A branch" : k === "tag" ? "A tag" : "An image"}
          </label>
        ))}
      </fieldset>
      {kind === "branch" ? (
        <p>
          <label for="deploy-branch">Branch</label>
          <input id="deploy-branch" value={branch} onInput={(e) => setBranch((e.target as HTMLInputElement).value)} required />
        </p>
      ) : kind === "tag" ? (
        <p>
          <label for="deploy-tag">Tag</label>
          {tags && tags.length > 0 && !tagsError ? (
            <select id="deploy-tag" value={tag} onChange={(e) => setTag((e.target as HTMLSelectElement).value)}>
              {tags.map((t) => (
                <option key={t}>{t}</option>
              ))}
            </select>
          ) : (
            <input id="deploy-tag" value={tag} onInput={(e) => setTag((e.target as HTMLInputElement).value)} required placeholder={tagsError ? "v1.2.3" : "loading tags…"} />
          )}
          {tagsError ? <span class="small dim block">{tagsError}</span> : null}
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
      <button type="submit" disabled={busy || hosts.length === 0}>
        {busy ? "Starting…" : `Deploy ${app.name}`}
      </button>
    </form>
  );
}
