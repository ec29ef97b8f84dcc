import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { prediction } from "../../../testing/fetch";
import { ResultCard } from "./ResultCard";

function explanationOf(explainAsked: boolean, explanation: string) {
  render(<ResultCard prediction={prediction({ explanation })} fileName="tile-001.png" explainAsked={explainAsked} />);
  return screen.getByRole("region", { name: /answer/i });
}

describe("ResultCard", () => {
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
