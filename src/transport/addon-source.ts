/**
 * @module Where the zeromq addon was loaded from: the file extracted from
 * the single executable, or the npm package when running from source.
 */

let extractedPath: string | undefined;

export function recordExtractedAddon(path: string): void {
  extractedPath = path;
}

export function addonSource(): string {
  return extractedPath ? `embedded, extracted to ${extractedPath}` : "npm package (running from source)";
}
