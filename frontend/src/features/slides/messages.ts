// A slide upload's failures in plain words; what is not slide-specific is worded as for images.
import { ApiError } from "../../api/client";
import { describeError, type Problem } from "../../api/errors";

export const SLIDE_TYPES = "Aperio SVS, tiled TIFF, NDPI, SCN, BIF or Philips TIFF";

export function describeSlideError(error: unknown): Problem {
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
      case "slide_not_found":
        return problem("Slide results gone", "The service no longer has this slide: its results expired or the service restarted. Upload it again.");
    }
  }
  if (error instanceof ApiError && error.kind === "aborted") {
    return { title: "Cancelled", body: "The upload was cancelled. Nothing was kept.", requestId: null };
  }
  return describeError(error);
}

/** "about 2 min left", "about 40 s left"; null while unknown. */
export function formatEta(seconds: number | null | undefined): string | null {
  if (seconds === null || seconds === undefined) return null;
  if (seconds < 1) return "almost done";
  if (seconds < 90) return `about ${Math.ceil(seconds)} s left`;
  if (seconds < 5400) return `about ${Math.round(seconds / 60)} min left`;
  return `about ${(seconds / 3600).toFixed(1)} h left`;
}
