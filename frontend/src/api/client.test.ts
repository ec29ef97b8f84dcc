import { describe, expect, it } from "vitest";
import { errorBody, json, mockService } from "../testing/fetch";
import { ApiError, parseRetryAfter, request } from "./client";

async function failure(promise: Promise<unknown>): Promise<ApiError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    return error as ApiError;
  }
  throw new Error("expected the request to fail");
}

describe("request", () => {
  it("returns the JSON body of a 2xx answer", async () => {
    mockService([], json(200, { status: "ok" }));
    await expect(request("/")).resolves.toEqual({ status: "ok" });
  });

  it("sends the caller's headers, and asks for JSON", async () => {
    const fetchMock = mockService([json(202, { id: "job1" })]);
    await request("/predict", { method: "POST", body: "{}", headers: { "Content-Type": "application/json" } });
    const headers = new Headers(fetchMock.mock.calls[0]![1]!.headers);
    expect(headers.get("Content-Type")).toBe("application/json");
    expect(headers.get("Accept")).toBe("application/json");
  });

  it("keeps the service's reason code, sentence, request id and Retry-After", async () => {
    mockService([errorBody(503, "busy", "The queue is full.", { "Retry-After": "12" })]);
    const error = await failure(request("/predict", { method: "POST" }));
    expect(error).toMatchObject({ kind: "http", status: 503, code: "busy", detail: "The queue is full.", requestId: "req-123", retryAfterS: 12 });
  });

  it("reads an error that is not the service's JSON (a proxy's HTML page) as a bare status", async () => {
    mockService([new Response("<html>Bad gateway</html>", { status: 502, headers: { "X-Request-ID": "r9" } })]);
    const error = await failure(request("/predict", { method: "POST" }));
    expect(error).toMatchObject({ kind: "http", status: 502, code: null, requestId: "r9" });
  });

  it("calls a 200 that is not JSON a bad response", async () => {
    mockService([new Response("hello", { status: 200 })]);
    expect(await failure(request("/predict", { method: "POST" }))).toMatchObject({ kind: "bad_response" });
  });

  it("tells a network failure from a cancel", async () => {
    mockService([new TypeError("Failed to fetch")]);
    expect(await failure(request("/predict", { method: "POST" }))).toMatchObject({ kind: "network" });

    const abort = new AbortController();
    abort.abort();
    mockService([new DOMException("aborted", "AbortError")]);
    expect(await failure(request("/predict", { method: "POST", signal: abort.signal }))).toMatchObject({ kind: "aborted" });
  });
});

describe("parseRetryAfter", () => {
  it.each([
    ["7", 7],
    [" 30 ", 30],
    ["", null],
    ["soon", null],
  ])("reads %j as %s seconds", (value, seconds) => {
    expect(parseRetryAfter(value)).toBe(seconds);
  });

  it("reads an HTTP date as seconds from now", () => {
    const now = Date.parse("Wed, 21 Oct 2026 07:28:00 GMT");
    expect(parseRetryAfter("Wed, 21 Oct 2026 07:28:45 GMT", now)).toBe(45);
    expect(parseRetryAfter(null)).toBeNull();
  });
});
