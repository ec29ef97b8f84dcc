/** The triage band the service put a tile or a slide in (TRIAGE_RULE_OUT / TRIAGE_RULE_IN), in a
 * pathologist's words. Absent when the service has no triage thresholds. */
export type Band = "rule-out" | "refer" | "rule-in";

const WORD: Record<Band, string> = { "rule-out": "RULE-OUT", refer: "REFER", "rule-in": "RULE-IN" };
export const BAND_HINT: Record<Band, string> = {
  "rule-out": "negative, low priority",
  refer: "refer: a pathologist looks",
  "rule-in": "suspicious: review first",
};

export function TriageBand({ band }: { band: Band }) {
  return (
    <span className="triage">
      <span className={`badge badge-${band}`}>{WORD[band]}</span> <span className="triage-hint">{BAND_HINT[band]}</span>
    </span>
  );
}
