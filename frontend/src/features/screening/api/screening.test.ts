import { describe, expect, it } from "vitest";
import { ApiError, type StreamedAnswer } from "../../../api/client";
import { answerOf, errorBody, liveStream, mockService, prediction, sseEvent, sseResponse, streamed } from "../../../testing/fetch";
import { predict } from "./screening";

const fields = () => ({ image_file: new File(["x"], "tile.png", { type: "image/png" }), question: null, explain: true });

/** Calls predict and writes down what it heard, in order. */
function listen() {
  const heard: string[] = [];
  const listener = {
    onAnswer: (answer: StreamedAnswer) => heard.push(`answer ${answer.answer} ${answer.probability}`),
    onText: (text: string) => heard.push(`text ${text}`),
  };
  return { heard, listener };
}

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  const error = await promise.then(() => null, (reason: unknown) => reason);
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

describe("predict (streamed)", () => {
  it("asks for events, and hears the answer, then each piece of text, then resolves with the done Prediction", async () => {
    const final = prediction({ answer: "no", probability: 0.12, explanation: "Normal crypts.", prediction: "No. Normal crypts." });
    const fetchMock = mockService([streamed(final, ["No", ". Normal", " crypts."])]);
    const { heard, listener } = listen();
    await expect(predict(fields(), listener)).resolves.toEqual(final);
    expect(heard).toEqual(["answer no 0.12", "text No", "text . Normal", "text  crypts."]);
    const headers = new Headers(fetchMock.mock.calls.at(-1)![1]!.headers);
    expect(headers.get("Accept")).toBe("text/event-stream");
    expect((fetchMock.mock.calls.at(-1)![1]!.body as FormData).has("stream")).toBe(false);
  });

  it("tells the answer before the stream has gone further (a slow model's explanation)", async () => {
    const live = liveStream();
    mockService([live.answer]);
    const { heard, listener } = listen();
    const result = predict(fields(), listener);
    live.send("answer", answerOf(prediction({ probability: 0.91 })));
    await expect.poll(() => heard).toEqual(["answer yes 0.91"]);
    live.send("token", { text: "Yes." });
    await expect.poll(() => heard).toEqual(["answer yes 0.91", "text Yes."]);
    live.send("done", prediction({ probability: 0.91 }));
    live.end();
    await expect(result).resolves.toMatchObject({ probability: 0.91 });
  });

  it("reads an event split across network chunks", async () => {
    const whole = sseEvent("answer", answerOf(prediction())) + sseEvent("done", prediction());
    const cut = [whole.slice(0, 9), whole.slice(9, 60), whole.slice(60)];
    mockService([sseResponse(cut)]);
    const { heard, listener } = listen();
    await expect(predict(fields(), listener)).resolves.toEqual(prediction());
    expect(heard).toEqual(["answer yes 0.87"]);
  });

  it.each([
    ["timeout", 504],
    ["engine_unavailable", 503],
    ["internal_error", 500],
  ])("rejects on an error event (%s) with the service's reason, request id and the status the JSON answer would have had", async (code, status) => {
    mockService([sseResponse([sseEvent("answer", answerOf(prediction())), sseEvent("error", { error: code, detail: "It broke.", request_id: "req-77" })])]);
    const { heard, listener } = listen();
    const error = await failure(predict(fields(), listener));
    expect(error).toMatchObject({ kind: "http", status, code, detail: "It broke.", requestId: "req-77" });
    expect(heard).toEqual(["answer yes 0.87"]);
  });

  it("rejects a refusal before the stream opened (503 busy) as the JSON error it is", async () => {
    mockService([errorBody(503, "busy", "The queue is full.", { "Retry-After": "9" })]);
    const error = await failure(predict(fields(), listen().listener));
    expect(error).toMatchObject({ kind: "http", status: 503, code: "busy", retryAfterS: 9, requestId: "req-123" });
  });

  it("calls a stream that ends before done, or an answer that is not events, a bad response", async () => {
    mockService([sseResponse([sseEvent("answer", answerOf(prediction()))])]);
    expect(await failure(predict(fields(), listen().listener))).toMatchObject({ kind: "bad_response" });
    mockService([new Response(JSON.stringify(prediction()), { status: 200, headers: { "Content-Type": "application/json" } })]);
    expect(await failure(predict(fields(), listen().listener))).toMatchObject({ kind: "bad_response" });
    mockService([sseResponse(["event: answer\r\ndata: {not json\r\n\r\n"])]);
    expect(await failure(predict(fields(), listen().listener))).toMatchObject({ kind: "bad_response" });
  });

  it("closes the connection when aborted mid-stream, and rejects as cancelled", async () => {
    const live = liveStream();
    mockService([live.answer]);
    const abort = new AbortController();
    const { heard, listener } = listen();
    const result = predict(fields(), listener, abort.signal);
    live.send("answer", answerOf(prediction()));
    await expect.poll(() => heard.length).toBe(1);
    abort.abort();
    expect(await failure(result)).toMatchObject({ kind: "aborted" });
    expect(live.aborted()).toBe(true);
  });
});
