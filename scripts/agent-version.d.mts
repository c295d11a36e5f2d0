export const releaseFile: string;
export function sourcesHash(): string;
export function packageVersion(): string;
export function recorded(): { version: string; sources: string };
