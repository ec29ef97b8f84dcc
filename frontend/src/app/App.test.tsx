import { render, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { health, json } from "../testing/fetch";
import { App } from "./App";

describe("App", () => {
  it("switches between the image and slide modes by the links in the header", async () => {
    window.location.hash = "";
    vi.stubGlobal("fetch", vi.fn(async () => json(200, health())));
    const user = userEvent.setup();
    render(<App />);
    expect(screen.getByRole("button", { name: "Analyse image" })).toBeInTheDocument();
    await user.click(screen.getByRole("link", { name: "Whole slide" }));
    await waitFor(() => expect(screen.getByRole("button", { name: "Screen slide" })).toBeInTheDocument());
    expect(screen.getByRole("link", { name: "Whole slide" })).toHaveAttribute("aria-current", "page");
    expect(screen.getByRole("note", { name: "Disclaimer" })).toBeVisible();
    await user.click(screen.getByRole("link", { name: "Single image" }));
    await waitFor(() => expect(screen.getByRole("button", { name: "Analyse image" })).toBeInTheDocument());
  });
});
