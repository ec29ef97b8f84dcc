// The call the image mode makes, typed by the service's OpenAPI schema (src/api/schema.d.ts).
import { request, type Prediction, type PredictForm } from "../../../api/client";

/** The form the service expects, with a real file where the schema says "binary string". */
export type PredictFields = {
  [K in keyof PredictForm]: K extends "image_file" ? File : PredictForm[K];
};

export function predict(fields: PredictFields, signal?: AbortSignal): Promise<Prediction> {
  const form = new FormData();
  form.append("image_file", fields.image_file, fields.image_file.name);
  if (fields.question) form.append("question", fields.question);
  form.append("explain", String(fields.explain));
  return request<Prediction>("/predict", { method: "POST", body: form, signal });
}
