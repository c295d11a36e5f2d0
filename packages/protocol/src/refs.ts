/**
 * Git ref validation, after `git check-ref-format` plus one rule of our own: a ref never
 * starts with `-`, so it can never be read as an option by git (`--upload-pack=...`).
 * Returns a reason when the ref is refused, or null when it is acceptable.
 */
export function refProblem(ref: string): string | null {
  if (ref.length === 0) return "is empty";
  if (ref.length > 255) return "is longer than 255 characters";
  if (ref.startsWith("-")) return "starts with '-'";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the control range is exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(ref)) return "contains a control character";
  if (/[ ~^:?*[\\]/.test(ref)) return "contains one of: space ~ ^ : ? * [ \\";
  if (ref.includes("..")) return "contains '..'";
  if (ref.includes("@{")) return "contains '@{'";
  if (ref === "@") return "is '@'";
  if (ref.startsWith("/") || ref.endsWith("/") || ref.includes("//")) return "has an empty path component";
  if (ref.endsWith(".")) return "ends with '.'";
  for (const part of ref.split("/")) {
    if (part.startsWith(".")) return "has a component starting with '.'";
    if (part.endsWith(".lock")) return "has a component ending with '.lock'";
  }
  return null;
}

export const isFullSha = (ref: string): boolean => /^[0-9a-f]{40}$/.test(ref);

/** URL forms git accepts that cannot be read as an option or select a command-running transport. */
export function gitUrlProblem(url: string): string | null {
  if (url.startsWith("-")) return "git url starts with '-'";
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
  if (/[\u0000-\u001f\u007f]/.test(url)) return "git url contains a control character";
  if (/^[a-z][a-z0-9+.-]*::/i.test(url)) return "git url uses a transport helper ('::')";
  if (/^(https?|ssh|git|file):\/\//i.test(url)) return null;
  if (/^[\w.-]+@[\w.-]+:/.test(url)) return null; // scp-like: git@github.com:acme/web.git
  if (url.startsWith("/")) return null; // a local path: tests, or a mirror on the host
  return "git url must be http(s)://, ssh://, git://, file://, user@host:path or an absolute path";
}
