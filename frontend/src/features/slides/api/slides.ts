// The slide calls, typed by the service's OpenAPI schema (src/api/schema.d.ts).
import { env } from "../../../config/env";
import {
  request, upload, type Health, type SlideForm, type SlideJob, type SlideTiles, type SlideUpload, type SlideUploadRequest,
  type StartSlide,
} from "../../../api/client";
import { uploadResumable, type ResumableOptions } from "./resumableUpload";

export type SlideFields = {
  [K in keyof SlideForm]: K extends "slide_file" ? File : SlideForm[K];
};

export const FINISHED: ReadonlySet<SlideJob["status"]> = new Set(["done", "failed", "cancelled"]);

/** 202 with the job as soon as the upload is stored and its tissue found. */
export function uploadSlide(fields: SlideFields, onProgress: (fraction: number) => void, signal?: AbortSignal): Promise<SlideJob> {
  const form = new FormData();
  form.append("slide_file", fields.slide_file, fields.slide_file.name);
  if (fields.question) form.append("question", fields.question);
  return upload<SlideJob>("/slides", form, { onProgress, signal });
}

/** How this service takes slides: "bucket" (straight to Cloud Storage) or "form" (multipart). */
export type UploadRoute = Health["slides"]["upload"];

/** "bucket" when GET / says the service opens uploads straight to its bucket; a local store, or an
 *  older service whose health check has no `slides`, takes the multipart form. */
export function uploadRoute(health: Health | null): UploadRoute {
  return health?.slides?.upload === "bucket" ? "bucket" : "form";
}

const JSON_BODY = { "Content-Type": "application/json" };

/** 201 with a resumable session in the service's bucket, opened for this page's origin. */
export function openSlideUpload(file: File, signal?: AbortSignal): Promise<SlideUpload> {
  const body: SlideUploadRequest = { filename: file.name, size: file.size };
  return request<SlideUpload>("/slides/uploads", { method: "POST", body: JSON.stringify(body), headers: JSON_BODY, signal });
}

/** 202 with the job, for an upload storage holds in full. */
export function startUploadedSlide(body: StartSlide, signal?: AbortSignal): Promise<SlideJob> {
  return request<SlideJob>("/slides", { method: "POST", body: JSON.stringify(body), headers: JSON_BODY, signal });
}

/** The bucket route whole: open a session, send the bytes straight to storage, start the job. */
export async function sendSlideToBucket(fields: SlideFields, options: ResumableOptions = {}): Promise<SlideJob> {
  const session = await openSlideUpload(fields.slide_file, options.signal);
  await uploadResumable(fields.slide_file, { url: session.upload_url, chunkBytes: session.chunk_bytes }, options);
  return startUploadedSlide({ upload_id: session.upload_id, question: fields.question ?? null }, options.signal);
}

export function getSlide(id: string, signal?: AbortSignal): Promise<SlideJob> {
  return request<SlideJob>(`/slides/${encodeURIComponent(id)}`, { method: "GET", signal });
}

export function cancelSlide(id: string): Promise<SlideJob> {
  return request<SlideJob>(`/slides/${encodeURIComponent(id)}`, { method: "DELETE" });
}

export function getTiles(job: SlideJob, signal?: AbortSignal): Promise<SlideTiles> {
  return request<SlideTiles>(job.tiles_url ?? `/slides/${encodeURIComponent(job.id)}/tiles`, { method: "GET", signal });
}

/** The overlay alone (no legend): the same geometry as the slide, so positions map 1:1. */
export function overlayUrl(job: SlideJob): string {
  return `${env.apiUrl}${job.heatmap_url}?legend=false`;
}

export function heatmapUrl(job: SlideJob): string {
  return `${env.apiUrl}${job.heatmap_url}`;
}
