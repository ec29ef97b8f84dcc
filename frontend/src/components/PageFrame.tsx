// What every mode of the page shares: the header with the service's state, the disclaimer that
// is always on screen, and the demo-model banner.
import type { ReactNode } from "react";
import type { Health } from "../api/client";
import type { Problem } from "../api/errors";
import { DISCLAIMER } from "../api/prompts.gen";

type Props = {
  nav?: ReactNode;
  health: Health | null;
  problem: Problem | null;
  demo: boolean;
  /** What the demo model makes meaningless here: "answers", "heatmaps". */
  demoWhat: string;
  children: ReactNode;
};

export function PageFrame({ nav, health, problem, demo, demoWhat, children }: Props) {
  return (
    <>
      <header className="site-header">
        <div className="container header-inner">
          <div>
            <h1 className="brand">Healer</h1>
            <p className="tagline">Colorectal-cancer screening aid for H&amp;E histopathology</p>
          </div>
          {nav}
          <ServiceStatus health={health} problem={problem} />
        </div>
      </header>

      <div className="container notices">
        <p className="disclaimer" role="note" aria-label="Disclaimer">
          <strong>Disclaimer.</strong> {health?.disclaimer ?? DISCLAIMER}
        </p>
        {demo && (
          <p className="demo-banner" role="note" aria-label="Demo model">
            <strong>Demo model.</strong> This service runs a random-weight demo model, not MedGemma: its {demoWhat} are
            meaningless and only show that the page works.
          </p>
        )}
      </div>
      {children}
    </>
  );
}

export function ServiceStatus({ health, problem }: { health: Health | null; problem: Problem | null }) {
  if (health) {
    return (
      <p className="service-status is-ok">
        <span className="dot" aria-hidden="true" /> Service ready · {health.model.id}
        {health.model.demo ? " (demo)" : ""}
        {health.model.adapter ? ` + adapter ${health.model.adapter.name}` : ""} · {health.model.device}
      </p>
    );
  }
  if (problem) {
    return (
      <p className="service-status is-down" title={problem.body}>
        <span className="dot" aria-hidden="true" /> {problem.title}
      </p>
    );
  }
  return <p className="service-status">Checking service…</p>;
}
