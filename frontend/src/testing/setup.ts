import "@testing-library/jest-dom/vitest";
import { cleanup } from "@testing-library/react";
import { afterEach, vi } from "vitest";

// jsdom has no object URLs; the page's own bookkeeping of them is what the tests check.
let counter = 0;
Object.defineProperty(URL, "createObjectURL", { configurable: true, writable: true, value: vi.fn(() => `blob:test/${++counter}`) });
Object.defineProperty(URL, "revokeObjectURL", { configurable: true, writable: true, value: vi.fn() });

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  vi.clearAllMocks();
  vi.useRealTimers();
});
