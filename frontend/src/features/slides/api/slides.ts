// The slide calls, typed by the service's OpenAPI schema (src/api/schema.d.ts).
import { env } from "../../../config/env";
import { request, upload, type SlideForm, type SlideJob, type SlideTiles } from "../../../api/client";

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
