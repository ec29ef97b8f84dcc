import { act, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { DEFAULT_QUESTION } from "../../../api/prompts.gen";
import { answerOf, errorBody, hanging, health, json, liveStream, mockService, prediction, sseEvent, sseResponse, streamed } from "../../../testing/fetch";
import { ScreeningPage } from "./ScreeningPage";

const png = () => new File([new Uint8Array([137, 80, 78, 71])], "tile-001.png", { type: "image/png" });
const tiff = () => new File([new Uint8Array([73, 73, 42, 0])], "slide.tif", { type: "image/tiff" });

function disclaimer() {
  return screen.getByRole("note", { name: "Disclaimer" });
}

async function uploadAndSubmit(user: ReturnType<typeof userEvent.setup>, file: File = png()) {
  await user.upload(screen.getByLabelText(/choose (an h&e|another) image/i), file);
  await user.click(screen.getByRole("button", { name: "Analyse image" }));
}

function sentForm(fetchMock: ReturnType<typeof mockService>, call = -1): FormData {
  const posts = fetchMock.mock.calls.filter(([url]) => String(url).endsWith("/predict"));
  return posts.at(call)![1]!.body as FormData;
}

describe("ScreeningPage", () => {
  it("shows the disclaimer and the default question before the service has answered", () => {
    mockService([], hanging);
    render(<ScreeningPage />);
    expect(disclaimer()).toHaveTextContent(/screening aid only, not a diagnosis/i);
    expect(screen.getByLabelText(/^question/i)).toHaveAttribute("placeholder", DEFAULT_QUESTION);
    expect(screen.getByRole("button", { name: "Analyse image" })).toBeDisabled();
  });

  it("uploads an image, submits it and shows a YES badge with P(yes) as a bar and a number", async () => {
    const fetchMock = mockService([streamed(prediction({ answer: "yes", probability: 0.87, threshold: 0.37 }))]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);

    const result = await screen.findByRole("region", { name: /answer/i });
    expect(within(result).getByText("YES")).toBeVisible();
    expect(within(result).getByRole("meter", { name: /probability of “yes”/i })).toHaveAttribute("aria-valuenow", "87");
    expect(within(result).getByText("0.87")).toBeVisible();
    expect(within(result).getByText("Irregular glands with nuclear atypia.")).toBeVisible();
    expect(within(result).getByText(/google\/medgemma-4b-it/)).toBeInTheDocument();
    expect(within(result).getByText(/model 21\.3 s · total 21\.4 s/)).toBeInTheDocument();
    expect(within(result).getByText("a yes needs P(yes) ≥ 0.37")).toBeInTheDocument();
    expect(screen.getByRole("status")).toHaveTextContent(
      "Answer: YES. The model reports features suggestive of colorectal cancer. Probability of yes 0.87.",
    );
    expect(disclaimer()).toBeVisible();

    const form = sentForm(fetchMock);
    expect((form.get("image_file") as File).name).toBe("tile-001.png");
    expect(form.has("question")).toBe(false); // empty: the service asks its default question
    expect(form.get("explain")).toBe("true");
  });

  it("says the triage band with the answer when the service has triage thresholds", async () => {
    mockService([streamed(prediction({ answer: "no", probability: 0.04, triage: "rule-out" }))]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);

    const result = await screen.findByRole("region", { name: /answer/i });
    expect(within(result).getByLabelText("Triage")).toHaveTextContent("Triage: RULE-OUT negative, low priority");
    expect(screen.getByRole("status")).toHaveTextContent(
      "Answer: NO. The model reports no features of colorectal cancer. Probability of yes 0.04. " +
        "Triage: rule-out, negative, low priority.",
    );
  });

  it.each([
    ["no", 0.08, "NO"],
    ["uncertain", 0.52, "UNCERTAIN"],
  ] as const)("shows a %s answer as a %s badge", async (answer, probability, word) => {
    mockService([streamed(prediction({ answer, probability }))]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    const result = await screen.findByRole("region", { name: /answer/i });
    expect(within(result).getByText(word)).toBeVisible();
    expect(within(result).getByRole("meter")).toHaveAttribute("aria-valuenow", String(Math.round(probability * 100)));
  });

  it("says when the service answered from its cache", async () => {
    mockService([streamed(prediction({ cached: true }))]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    const result = await screen.findByRole("region", { name: /answer/i });
    expect(within(result).getByText(/answered from the service's cache/)).toBeInTheDocument();
  });

  it("says the model gave no explanation when the page asked for one and the answer has none", async () => {
    const fetchMock = mockService([streamed(prediction({ explanation: "" }))]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    const result = await screen.findByRole("region", { name: /answer/i });
    expect(sentForm(fetchMock).get("explain")).toBe("true");
    expect(within(result).getByText("The model gave no explanation.")).toBeVisible();
    expect(within(result).queryByText(/no explanation was asked for/i)).not.toBeInTheDocument();
  });

  it("sends the question the user typed", async () => {
    const fetchMock = mockService([streamed(prediction())]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await user.type(screen.getByLabelText(/^question/i), "Are there signet-ring cells?");
    await uploadAndSubmit(user);
    await screen.findByRole("region", { name: /answer/i });
    expect(sentForm(fetchMock).get("question")).toBe("Are there signet-ring cells?");
  });

  it("shows the demo-model banner when the health check says the demo model answers", async () => {
    mockService([], json(200, health(true)));
    render(<ScreeningPage />);
    expect(await screen.findByRole("note", { name: "Demo model" })).toHaveTextContent(/answers are\s+meaningless/i);
    expect(disclaimer()).toBeVisible();
  });

  it("shows the demo-model banner when an answer comes from the demo model, even if the health check failed", async () => {
    mockService([streamed(prediction({ model: { ...health(true).model } }))], new TypeError("Failed to fetch"));
    const user = userEvent.setup();
    render(<ScreeningPage />);
    expect(await screen.findByText("Service unreachable")).toBeInTheDocument();
    expect(screen.queryByRole("note", { name: "Demo model" })).not.toBeInTheDocument();
    await uploadAndSubmit(user);
    expect(await screen.findByRole("note", { name: "Demo model" })).toBeVisible();
  });

  it("shows no demo banner for the real model", async () => {
    mockService([streamed(prediction())]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    expect(await screen.findByText(/service ready/i)).toBeInTheDocument();
    await uploadAndSubmit(user);
    await screen.findByRole("region", { name: /answer/i });
    expect(screen.queryByRole("note", { name: "Demo model" })).not.toBeInTheDocument();
  });

  it.each([
    ["413 upload too large", errorBody(413, "upload_too_large", "too big"), /file too large/i, /larger than the service accepts/i],
    ["413 too many pixels", errorBody(413, "image_too_large", "bomb"), /image too large/i, /too many pixels/i],
    ["415 unsupported", errorBody(415, "unsupported_image", "nope"), /unsupported file/i, /PNG, JPEG, TIFF, GIF, BMP or WebP/],
    ["400 corrupt", errorBody(400, "corrupt_image", "bad"), /image could not be read/i, /truncated or corrupt/i],
    ["503 busy with Retry-After", errorBody(503, "busy", "queue full", { "Retry-After": "7" }), /service busy/i, /Service busy — try again in 7 s\./],
    ["503 model loading", errorBody(503, "model_not_ready", "loading"), /model still loading/i, /still loading/i],
    ["504 timeout", errorBody(504, "timeout", "slow"), /took too long/i, /try again/i],
    ["401 API key required", errorBody(401, "unauthorized", "key"), /api key required/i, /X-API-Key/],
    ["422 question too long", errorBody(422, "question_too_long", "The question is longer than 500 characters."), /not accepted/i, /longer than 500 characters/],
    ["network failure", new TypeError("Failed to fetch"), /service unreachable/i, /could not be reached/i],
  ])("explains %s in words, focuses it and keeps the disclaimer", async (_, answer, title, body) => {
    mockService([answer]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    const alert = await screen.findByRole("alert");
    expect(within(alert).getByRole("heading", { name: title })).toBeVisible();
    expect(alert).toHaveTextContent(body);
    expect(alert).toHaveFocus();
    expect(disclaimer()).toBeVisible();
    expect(screen.getByText("No results yet.")).toBeInTheDocument();
  });

  it("shows the request id of a failed request so it can be reported", async () => {
    mockService([errorBody(500, "internal_error", "boom")]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    expect(await screen.findByRole("alert")).toHaveTextContent("Reference: req-123");
  });

  it("shows progress with the elapsed time while waiting, and cancels the request", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    const fetchMock = mockService([hanging]);
    const user = userEvent.setup({ advanceTimers: vi.advanceTimersByTime });
    render(<ScreeningPage />);
    await uploadAndSubmit(user);

    expect(await screen.findByRole("status")).toHaveTextContent(/analysing tile-001\.png/i);
    expect(screen.getByRole("button", { name: "Analysing…" })).toBeDisabled();
    await act(async () => {
      vi.advanceTimersByTime(3000);
    });
    expect(screen.getByText(/^\d+ s$/)).toHaveTextContent(/^3 s$/);

    await user.click(screen.getByRole("button", { name: "Cancel" }));
    const signal = fetchMock.mock.calls.find(([url]) => String(url).endsWith("/predict"))![1]!.signal!;
    expect(signal.aborted).toBe(true);
    expect(await screen.findByRole("heading", { name: "Cancelled" })).toBeVisible();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Analyse image" })).toBeEnabled();
    expect(screen.getByText("No results yet.")).toBeInTheDocument();
  });

  it("shows the badge and P(yes) when the answer lands, the explanation as it is written, then the final Prediction", async () => {
    const live = liveStream();
    mockService([live.answer]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    expect(await screen.findByRole("heading", { name: /analysing tile-001\.png/i })).toBeVisible();

    const final = prediction({ answer: "yes", probability: 0.93, explanation: "Cribriform glands invade the stroma.", prediction: "Yes. Cribriform glands invade the stroma." });
    live.send("answer", answerOf(final));
    const result = await screen.findByRole("region", { name: /answer/i });
    expect(within(result).getByText("YES")).toBeVisible();
    expect(within(result).getByRole("meter")).toHaveAttribute("aria-valuenow", "93");
    expect(within(result).getByText("The model is writing…")).toBeVisible();
    expect(screen.queryByRole("heading", { name: /analysing/i })).not.toBeInTheDocument();

    live.send("token", { text: "Yes." });
    live.send("token", { text: " Cribriform glands" });
    await waitFor(() => expect(within(result).getByText(/^Yes\. Cribriform glands/)).toBeVisible());
    expect(within(result).queryByText(/google\/medgemma/)).not.toBeInTheDocument(); // the model and timings come with done
    expect(screen.getByText("No results yet.")).toBeInTheDocument(); // listed once it is done

    live.send("done", final);
    live.end();
    const done = await within(result).findByText("Cribriform glands invade the stroma.");
    expect(done).toBeVisible(); // the Prediction's explanation replaces the raw text
    expect(within(result).queryByText(/^Yes\. Cribriform/)).not.toBeInTheDocument();
    expect(within(result).queryByRole("button", { name: "Stop explanation" })).not.toBeInTheDocument();
    expect(within(result).getByText(/google\/medgemma-4b-it/)).toBeInTheDocument();
    expect(within(screen.getByRole("list", { name: "Results" })).getAllByRole("listitem")).toHaveLength(1);
    expect(screen.getByRole("button", { name: "Analyse image" })).toBeEnabled();
  });

  it("announces the answer once, and never the explanation as it grows", async () => {
    const live = liveStream();
    mockService([live.answer]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    const region = screen.getByRole("status");
    const said: string[] = [];
    const observer = new MutationObserver(() => said.push(region.textContent ?? ""));
    observer.observe(region, { childList: true, characterData: true, subtree: true });

    live.send("answer", answerOf(prediction({ answer: "no", probability: 0.04 })));
    await screen.findByRole("region", { name: /answer/i });
    for (const text of ["No.", " Normal", " colonic", " mucosa."]) live.send("token", { text });
    await screen.findByText(/Normal colonic mucosa/);
    live.send("done", prediction({ answer: "no", probability: 0.04, explanation: "Normal colonic mucosa." }));
    live.end();
    await waitFor(() => expect(screen.getByRole("button", { name: "Analyse image" })).toBeEnabled());
    observer.disconnect();

    expect(said).toEqual(["Answer: NO. The model reports no features of colorectal cancer. Probability of yes 0.04."]);
    const explanation = screen.getByText("Normal colonic mucosa.");
    expect(explanation.closest("[aria-live], [role=status], [role=alert], [role=log]")).toBeNull();
  });

  it("shows an error event that ends the stream like any error, with its request id, and focuses it", async () => {
    const live = liveStream();
    mockService([live.answer]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    live.send("answer", answerOf(prediction()));
    await screen.findByRole("region", { name: /answer/i });
    live.send("error", { error: "timeout", detail: "The model took longer than 120 s.", request_id: "req-777" });
    const alert = await screen.findByRole("alert");
    expect(within(alert).getByRole("heading", { name: /took too long/i })).toBeVisible();
    expect(alert).toHaveTextContent("Reference: req-777");
    expect(alert).toHaveFocus();
    expect(screen.queryByRole("region", { name: /answer/i })).not.toBeInTheDocument();
    expect(screen.getByText("No results yet.")).toBeInTheDocument();
  });

  it("stops the explanation: aborts the request, keeps the final answer and lists it", async () => {
    const live = liveStream();
    mockService([live.answer]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    live.send("answer", answerOf(prediction({ answer: "yes", probability: 0.81 })));
    live.send("token", { text: "Yes. Irregular" });
    const result = await screen.findByRole("region", { name: /answer/i });
    await within(result).findByText(/Yes\. Irregular/);

    await user.click(within(result).getByRole("button", { name: "Stop explanation" }));
    expect(live.aborted()).toBe(true);
    const stopped = await within(result).findByText(/stopped before the model finished/);
    expect(stopped.closest("p")).toHaveFocus();
    expect(within(result).getByText("YES")).toBeVisible();
    expect(within(screen.getByRole("list", { name: "Results" })).getByRole("listitem")).toHaveTextContent(/YES.*P\(yes\) 0\.81/);
    expect(screen.getByRole("button", { name: "Analyse image" })).toBeEnabled();
  });

  it("aborts the stream when the page goes away (another mode), and lists nothing after", async () => {
    const live = liveStream();
    mockService([live.answer]);
    const user = userEvent.setup();
    const { unmount } = render(<ScreeningPage />);
    await uploadAndSubmit(user);
    live.send("answer", answerOf(prediction()));
    await screen.findByRole("region", { name: /answer/i });
    const urlsBefore = vi.mocked(URL.createObjectURL).mock.calls.length;
    unmount();
    expect(live.aborted()).toBe(true);
    await new Promise((settle) => setTimeout(settle, 50));
    expect(URL.createObjectURL).toHaveBeenCalledTimes(urlsBefore); // no thumbnail made for a page that is gone
  });

  it("calls a stream that ends before its Prediction an unexpected answer", async () => {
    mockService([sseResponse([sseEvent("answer", answerOf(prediction()))])]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user);
    expect(await screen.findByRole("alert")).toHaveTextContent(/unexpected answer/i);
  });

  it("lists this session's results with thumbnails, newest first, and clears them with one click", async () => {
    mockService([
      streamed(prediction({ answer: "no", probability: 0.1 })),
      streamed(prediction({ answer: "yes", probability: 0.9 })),
    ]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await uploadAndSubmit(user, new File(["a"], "first.png", { type: "image/png" }));
    await screen.findByRole("region", { name: /answer/i });
    await uploadAndSubmit(user, new File(["b"], "second.jpg", { type: "image/jpeg" }));
    await screen.findByText("P(yes) 0.90");

    const items = within(screen.getByRole("list", { name: "Results" })).getAllByRole("listitem");
    expect(items.map((item) => within(item).getByRole("img").getAttribute("alt"))).toEqual([
      "Preview of second.jpg",
      "Preview of first.png",
    ]);
    expect(items[0]).toHaveTextContent(/YES.*P\(yes\) 0\.90/);
    expect(items[1]).toHaveTextContent(/NO.*P\(yes\) 0\.10/);

    const thumbnails = items.map((item) => within(item).getByRole("img").getAttribute("src"));
    const form = screen.getByRole("form", { name: "Image and question" });
    const preview = within(form).getByRole("img", { name: "Preview of second.jpg" });
    await user.click(screen.getByRole("button", { name: "Clear results" }));

    expect(screen.queryByRole("list", { name: "Results" })).not.toBeInTheDocument();
    expect(screen.getByText("No results yet.")).toBeInTheDocument();
    for (const url of thumbnails) expect(URL.revokeObjectURL).toHaveBeenCalledWith(url);
    expect(preview).toBeInTheDocument(); // the image still being previewed keeps its URL
    expect(URL.revokeObjectURL).not.toHaveBeenCalledWith(preview.getAttribute("src"));
  });

  it("shows a named placeholder instead of a preview for a TIFF", async () => {
    mockService([streamed(prediction())]);
    const user = userEvent.setup();
    render(<ScreeningPage />);
    await user.upload(screen.getByLabelText(/choose an h&e image/i), tiff());
    expect(screen.getByRole("img", { name: "No preview for slide.tif" })).toHaveTextContent("slide.tif");
    expect(URL.createObjectURL).not.toHaveBeenCalled();
    await user.click(screen.getByRole("button", { name: "Analyse image" }));
    const items = await screen.findAllByRole("listitem");
    expect(within(items[0]!).getByRole("img", { name: "No preview for slide.tif" })).toBeInTheDocument();
  });

  it("takes a file dropped on the drop zone", async () => {
    mockService([]);
    render(<ScreeningPage />);
    fireEvent.drop(screen.getByTestId("dropzone"), { dataTransfer: { files: [png()] } });
    expect(await screen.findByRole("img", { name: "Preview of tile-001.png" })).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Analyse image" })).toBeEnabled();
  });
});
