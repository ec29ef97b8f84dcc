// Browsers other than Safari cannot draw TIFF, the commonest slide-export format: for those
// the page shows a placeholder with the file name instead of a broken image.
const NO_PREVIEW = /^image\/tiff?$/i;
const NO_PREVIEW_EXT = /\.tiff?$/i;

export function canPreview(file: File): boolean {
  return !NO_PREVIEW.test(file.type) && !NO_PREVIEW_EXT.test(file.name);
}
