// Browsers other than Safari cannot draw TIFF, the commonest slide-export format: for those
// the page shows a placeholder with the file name instead of a broken image.
const NO_PREVIEW = /^image\/tiff?$/i;
const NO_PREVIEW_EXT = /\.tiff?$/i;

export function canPreview(file: File): boolean {
  return !NO_PREVIEW.test(file.type) && !NO_PREVIEW_EXT.test(file.name);
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

export function formatMs(ms: number | undefined): string {
  if (ms === undefined) return "–";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}
