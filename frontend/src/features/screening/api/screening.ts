// The call the image mode makes, typed by the service's OpenAPI schema (src/api/schema.d.ts):
// POST /predict, streamed. The answer comes first, the moment it is final, then the model's text
// as it is written, then the whole Prediction (the body the unstreamed call returns).
import {
  ApiError,
  stream,
  streamedError,
  type Prediction,
  type PredictForm,
  type StreamedAnswer,
  type StreamedText,
} from "../../../api/client";

/** The form the service expects, with a real file where the schema says "binary string"
 *  (`stream` is not a field here: the page always streams, asking with its Accept header). */
export type PredictFields = {
  [K in Exclude<keyof PredictForm, "stream">]: K extends "image_file" ? File : PredictForm[K];
};

export type PredictionListener = {
  /** The screening answer (label, P(yes), answer mass, triage): final, before the explanation. */
  onAnswer: (answer: StreamedAnswer) => void;
  /** What the model's raw text gained (it starts with the answer word; the Prediction's
   *  explanation is the sentence after it). */
  onText: (text: string) => void;
};

/** Resolves with the `done` event's Prediction; rejects with an ApiError as `request` does, and
 *  with the service's error when an `error` event ends the stream. Aborting `signal` closes the
 *  connection, which makes the service drop the query (queued or running). */
export async function predict(fields: PredictFields, listener: PredictionListener, signal?: AbortSignal): Promise<Prediction> {
  const form = new FormData();
  form.append("image_file", fields.image_file, fields.image_file.name);
  if (fields.question) form.append("question", fields.question);
  form.append("explain", String(fields.explain));
  let done: Prediction | null = null;
  await stream("/predict", { method: "POST", body: form, signal }, ({ event, data }) => {
    if (done) return;
    const body = parsed(data);
    switch (event) {
      case "answer":
        return listener.onAnswer(body as StreamedAnswer);
      case "token":
        return listener.onText((body as StreamedText).text);
      case "done":
        done = body as Prediction;
        return;
      case "error":
        throw streamedError(body);
    }
  });
  if (done === null) throw new ApiError({ kind: "bad_response", status: 200 }); // the stream ended early
  return done;
}

function parsed(data: string): object {
  try {
    const body: unknown = JSON.parse(data);
    if (body !== null && typeof body === "object") return body;
  } catch {
    // not JSON: below
  }
  throw new ApiError({ kind: "bad_response", status: 200 });
}
