// A slide upload's failures in plain words; what is not slide-specific is worded as for images.
import { ApiError } from "../../api/client";
import { describeError, type Problem } from "../../api/errors";
import { BucketUploadError } from "./api/resumableUpload";

export const SLIDE_TYPES = "Aperio SVS, tiled TIFF, NDPI, SCN, BIF or Philips TIFF";

export function describeSlideError(error: unknown): Problem {
  if (error instanceof BucketUploadError) return describeBucketError(error);
  if (error instanceof ApiError && error.kind === "http") {
    const problem = (title: string, body: string): Problem => ({ title, body, requestId: error.requestId });
    switch (error.code) {
      case "corrupt_slide":
        return problem("Slide could not be read", "The file looks like a slide but could not be read: it may be truncated or corrupt. Try exporting it again.");
      case "unsupported_slide":
        return problem("Not a slide", `This file is not a whole-slide image the service reads (${SLIDE_TYPES}). For a single image, use “Single image”.`);
      case "too_many_tiles":
        return problem("Too much tissue", error.detail ?? "The slide has more tissue tiles than the service scores. Send a smaller region.");
      case "upload_too_large":
        return problem("Slide too large", "The file is larger than the service accepts for slides.");
      case "too_large": // asked before any byte went: the service's sentence names its limit
        return problem("Slide too large", error.detail ?? "The file is larger than the service accepts for slides.");
      case "upload_not_found":
        return problem("Upload not found", "The service did not find the whole slide in storage, so it could not start. Upload it again.");
      case "direct_upload_unavailable":
        return problem("Upload not available", "The service no longer takes slides straight to storage. Reload the page and upload the slide again.");
      case "slide_not_found":
        return problem("Slide results gone", "The service no longer has this slide: its results expired or the service restarted. Upload it again.");
    }
  }
  if (error instanceof ApiError && error.kind === "aborted") {
    return { title: "Cancelled", body: "The upload was cancelled. Nothing was kept.", requestId: null };
  }
  return describeError(error);
}

/** The bucket route's own failures: storage, not the service, ended the upload. */
function describeBucketError(error: BucketUploadError): Problem {
  const problem = (title: string, body: string): Problem => ({ title, body, requestId: null });
  switch (error.reason) {
    case "gave_up":
      return problem("Upload interrupted", `The connection to storage kept failing (${error.tries} tries), so the upload stopped. Check the connection and upload the slide again.`);
    case "expired":
      return problem("Upload expired", "Storage no longer has this upload (it expired or was cancelled). Upload the slide again.");
    case "refused":
      return problem("Storage refused the upload", `Storage answered HTTP ${error.status} to the slide's bytes. Upload it again; if it persists, the service's storage settings need a look.`);
  }
}

/** "about 2 min left", "about 40 s left"; null while unknown. */
export function formatEta(seconds: number | null | undefined): string | null {
  if (seconds === null || seconds === undefined) return null;
  if (seconds < 1) return "almost done";
  if (seconds < 90) return `about ${Math.ceil(seconds)} s left`;
  if (seconds < 5400) return `about ${Math.round(seconds / 60)} min left`;
  return `about ${(seconds / 3600).toFixed(1)} h left`;
}
