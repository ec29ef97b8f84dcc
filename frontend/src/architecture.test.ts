// @vitest-environment node
// The direction of imports (bulletproof-react): shared code ← features ← app.
//   src/features/<name>/ imports the shared folders and its own folder: never another feature,
//     never src/app (which composes the features);
//   the shared folders (SHARED) import each other only: never a feature, never src/app.
// Packages ("react", "vitest") are not checked; relative and root-absolute paths are resolved.
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = dirname(fileURLToPath(import.meta.url));
const SHARED = ["api", "components", "config", "lib", "testing"];
const CODE = /\.(ts|tsx|js|jsx|mjs)$/;

/** Every module a source text names: import … from, import "…", export … from, import(…). */
function specifiers(text: string): string[] {
  const found = /\b(?:import|export)\s+(?:[^'";]*?\s+from\s+)?["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;
  return [...text.matchAll(found)].map((match) => (match[1] ?? match[2])!);
}

/** Why `file` (a path under src/) may not import `spec`, or null when it may. */
function forbidden(file: string, spec: string): string | null {
  if (!spec.startsWith(".") && !spec.startsWith("/")) return null; // a package
  const target = spec.startsWith("/") ? join(SRC, "..", spec) : resolve(SRC, dirname(file), spec);
  const path = relative(SRC, target).split(sep);
  const [from, own] = file.split("/");
  const [top, feature] = path;
  if (from !== "features" && !SHARED.includes(from!)) return null; // src/app, main.tsx: they compose
  if (top === "..") return "outside src/";
  if (SHARED.includes(top!)) return null;
  if (top === "features" && from === "features" && feature === own) return null;
  if (top === "features") return `${from === "features" ? "another" : "a"} feature (features/${feature})`;
  return top === "app" ? "src/app, which composes the features" : `src/${path.join("/")}`;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(join(SRC, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) return sourceFiles(path);
    return CODE.test(entry.name) ? [path] : [];
  });
}

/** "file imports spec: reason" for each import under src/<dir> the rule forbids. */
function violations(dir: string): string[] {
  return sourceFiles(dir).flatMap((file) =>
    specifiers(readFileSync(join(SRC, file), "utf8")).flatMap((spec) => {
      const reason = forbidden(file, spec);
      return reason ? [`${file} imports "${spec}": ${reason}`] : [];
    }),
  );
}

const features = readdirSync(join(SRC, "features"), { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);

describe("architecture", () => {
  it("finds the features to check", () => {
    expect(features).toEqual(expect.arrayContaining(["screening", "slides"]));
  });

  it.each(features)("features/%s imports only shared code and its own folder", (name) => {
    expect(violations(`features/${name}`)).toEqual([]);
  });

  it.each(SHARED)("src/%s imports neither a feature nor src/app", (dir) => {
    expect(violations(dir)).toEqual([]);
  });

  it("reads every form of import, across lines", () => {
    const text = [
      'import a from "./a";',
      "import type { B } from '../b';",
      'import {\n  c,\n  d,\n} from "./c";',
      'import "./d.css";',
      'export { e } from "./e";',
      'export * from "./f";',
      'const g = await import("./g");',
      'export const h = "not an import";',
    ].join("\n");
    expect(specifiers(text)).toEqual(["./a", "../b", "./c", "./d.css", "./e", "./f", "./g"]);
  });

  it.each([
    ["features/slides/components/SlidePage.tsx", "../../screening/files", "another feature (features/screening)"],
    ["features/slides/messages.ts", "../screening/messages", "another feature (features/screening)"],
    ["features/screening/components/ScreeningPage.tsx", "../../../app/App", "src/app, which composes the features"],
    ["features/screening/components/ScreeningPage.tsx", "/src/app/App", "src/app, which composes the features"],
    ["features/slides/api/slides.ts", "../../../main", "src/main"],
    ["lib/format.ts", "../app/App", "src/app, which composes the features"],
    ["components/PageFrame.tsx", "../features/screening/api/screening", "a feature (features/screening)"],
    ["features/slides/components/SlidePage.tsx", "../../../../vite.config", "outside src/"],
  ])("forbids %s importing %s", (file, spec, reason) => {
    expect(forbidden(file, spec)).toBe(reason);
  });

  it.each([
    ["features/slides/components/SlidePage.tsx", "../api/slides"],
    ["features/slides/components/SlidePage.tsx", "../../slides/messages"],
    ["features/screening/components/ResultCard.tsx", "../../../lib/format"],
    ["features/screening/components/ScreeningPage.tsx", "/src/components/PageFrame"],
    ["components/PageFrame.tsx", "../api/errors"],
    ["app/App.tsx", "../features/slides/components/SlidePage"],
    ["features/screening/api/screening.ts", "react"],
  ])("allows %s importing %s", (file, spec) => {
    expect(forbidden(file, spec)).toBeNull();
  });
});
