import { forwardRef } from "react";
import type { Problem } from "../api/errors";

type Props = { problem: Problem; tone: "error" | "notice" };

/** An API failure in words. "notice" (a cancel) is a polite status, not an alarm. */
export const ErrorAlert = forwardRef<HTMLDivElement, Props>(function ErrorAlert({ problem, tone }, ref) {
  return (
    <div ref={ref} tabIndex={-1} className={`panel alert alert-${tone}`} role={tone === "error" ? "alert" : "status"}>
      <h2 className="panel-title">{problem.title}</h2>
      <p>{problem.body}</p>
      {problem.requestId && <p className="muted small">Reference: {problem.requestId}</p>}
    </div>
  );
});
