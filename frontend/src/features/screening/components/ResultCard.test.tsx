import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { MODEL, prediction } from "../../../testing/fetch";
import { ResultCard } from "./ResultCard";

function explanationOf(explainAsked: boolean, explanation: string) {
  render(<ResultCard prediction={prediction({ explanation })} fileName="tile-001.png" explainAsked={explainAsked} />);
  return screen.getByRole("region", { name: /answer/i });
}

describe("ResultCard", () => {
  it("shows the triage band the service put the tile in", () => {
    render(<ResultCard prediction={prediction({ triage: "rule-in" })} fileName="t.png" explainAsked />);
    const result = screen.getByRole("region", { name: /answer/i });
    expect(within(result).getByLabelText("Triage")).toHaveTextContent("Triage: RULE-IN suspicious: review first");
  });

  it("shows no triage line when the service has no triage thresholds", () => {
    render(<ResultCard prediction={prediction({ triage: null })} fileName="t.png" explainAsked />);
    expect(screen.queryByLabelText("Triage")).not.toBeInTheDocument();
  });

  it("says no explanation was asked for when explain was off", () => {
    const result = explanationOf(false, "");
    expect(within(result).getByText("No explanation was asked for.")).toBeVisible();
    expect(within(result).queryByText(/model gave no explanation/i)).not.toBeInTheDocument();
  });

  it("says the model gave no explanation when one was asked for and it came back empty", () => {
    const result = explanationOf(true, "");
    expect(within(result).getByText("The model gave no explanation.")).toBeVisible();
    expect(within(result).queryByText(/no explanation was asked for/i)).not.toBeInTheDocument();
  });

  it("shows the model's explanation when there is one", () => {
    const result = explanationOf(true, "Irregular glands with nuclear atypia.");
    expect(within(result).getByText("Irregular glands with nuclear atypia.")).toBeVisible();
  });

  it("names the CPU class the answer was computed on, when the service says it", () => {
    const compute = { processor: "AMD EPYC 7B13", cpu_class: "avx2" as const, capped_by: [], kernels: {} };
    render(<ResultCard prediction={prediction({ model: { ...MODEL, compute } })} fileName="t.png" explainAsked />);
    const result = screen.getByRole("region", { name: /answer/i });
    expect(within(result).getByText(/cpu \(CPU class avx2\) · int8/)).toBeVisible();
  });

  it("names the remote engine and how much probability its top tokens left unseen", () => {
    const compute = { processor: "http://vllm:8000/v1", cpu_class: null, capped_by: [], kernels: {} };
    const model = { ...MODEL, engine: "vllm" as const, device: "remote" as const, quantization: "engine's own" as const, compute };
    render(<ResultCard prediction={prediction({ model, unseen_mass: 0.04 })} fileName="t.png" explainAsked />);
    const result = screen.getByRole("region", { name: /answer/i });
    expect(within(result).getByText(/the engine's own precision · served by the OpenAI-compatible engine at http:\/\/vllm:8000\/v1/)).toBeVisible();
    expect(within(result).getByText(/exact up to 4% of probability it did not show/)).toBeVisible();
  });

  it("says nothing of unseen probability when the engine read the full softmax", () => {
    render(<ResultCard prediction={prediction({ unseen_mass: 0 })} fileName="t.png" explainAsked />);
    expect(screen.queryByText(/did not show/)).not.toBeInTheDocument();
  });

  it("shows how much of its probability the model put on answering", () => {
    render(<ResultCard prediction={prediction({ answer: "yes", answer_mass: 0.96 })} fileName="t.png" explainAsked />);
    const result = screen.getByRole("region", { name: /answer/i });
    expect(within(result).getByText(/put 96 % of its probability on answering yes or no/)).toBeVisible();
    expect(within(result).queryByText(/refer for review/)).not.toBeInTheDocument();
  });

  it("explains an uncertain answer that comes from too little probability on answering", () => {
    const low = prediction({ answer: "uncertain", probability: 0.97, answer_mass: 0.12, min_answer_mass: 0.5 });
    render(<ResultCard prediction={low} fileName="t.png" explainAsked />);
    const result = screen.getByRole("region", { name: /answer/i });
    expect(within(result).getByText(/put 12 % of its probability on answering/)).toBeVisible();
    expect(within(result).getByText(/needs at least 50 %, so the probability above is not an answer/)).toBeVisible();
  });

  it("says so when the model never said yes or no", () => {
    render(<ResultCard prediction={prediction({ answer: "uncertain", answer_mass: 0 })} fileName="t.png" explainAsked />);
    expect(screen.getByText(/did not say yes or no within its first words/)).toBeVisible();
  });
});

describe("ResultCard's model line", () => {
  it("names the fine-tuned adapter that answered, beside the base model", () => {
    const adapter = { name: "lab-crc-2025", sha256: "0123456789ab", base_revision: null };
    const answered = prediction({});
    render(<ResultCard prediction={{ ...answered, model: { ...answered.model, adapter } }} fileName="t.png" explainAsked />);
    expect(screen.getByText(/fine-tuned adapter lab-crc-2025 \(0123456789ab\)/)).toBeVisible();
  });

  it("names no adapter when the base model answered", () => {
    render(<ResultCard prediction={prediction({})} fileName="t.png" explainAsked />);
    expect(screen.queryByText(/adapter/)).not.toBeInTheDocument();
  });
});
