// What a person reads when a call fails: an ApiError (client.ts) in plain words, and what to do
// next. Worded for images; a feature with codes of its own words those first and falls back to this.
import { ApiError } from "./client";

export type Problem = { title: string; body: string; requestId: string | null };

const TYPES = "PNG, JPEG, TIFF, GIF, BMP or WebP";

export function describeError(error: unknown): Problem {
  if (!(error instanceof ApiError)) {
    return { title: "Something went wrong", body: "An unexpected error occurred in the page. Reload and try again.", requestId: null };
  }
  const id = error.requestId;
  const problem = (title: string, body: string): Problem => ({ title, body, requestId: id });
  switch (error.kind) {
    case "aborted":
      return problem("Cancelled", "The analysis was cancelled. Nothing was saved.");
    case "network":
      return problem(
        "Service unreachable",
        "The screening service could not be reached. Check your connection, or that the service is running, then try again.",
      );
    case "bad_response":
      return problem("Unexpected answer", "The service answered with something this page cannot read. Try again.");
  }
  if (error.status === 503 || error.status === 429) {
    if (error.retryAfterS !== null) {
      return problem("Service busy", `Service busy — try again in ${error.retryAfterS} s.`);
    }
    if (error.code === "model_not_ready") {
      return problem("Model still loading", "The model is still loading. Try again in a moment.");
    }
    return problem("Service busy", "The service is busy. Try again in a moment.");
  }
  switch (error.status) {
    case 400:
      return problem("Image could not be read", "The file could not be read as an image: it may be truncated or corrupt. Try another export of the image.");
    case 401:
      return problem(
        "API key required",
        "This service is set up to require an API key (X-API-Key), which this page does not send. Call the API directly with the key, or ask the service's administrator.",
      );
    case 413:
      return error.code === "image_too_large"
        ? problem("Image too large", "The image has too many pixels for the service. Crop or downscale it and try again.")
        : problem("File too large", "The file is larger than the service accepts. Use a smaller or compressed export of the image.");
    case 415:
      return problem("Unsupported file", `This file is not an image the service can read. Use ${TYPES}.`);
    case 422:
      return problem("Request not accepted", error.detail ?? "The service did not accept the request. Check the question and the file.");
    case 504:
      return problem("Took too long", "The service took too long to answer. Try again, or with a smaller image.");
  }
  return problem(
    "Service error",
    `The service hit an error${error.status ? ` (HTTP ${error.status})` : ""}. Try again; if it persists, report the reference below.`,
  );
}
