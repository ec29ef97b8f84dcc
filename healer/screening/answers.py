"""From the model's raw output to a screening answer: pure functions, no model needed.

Where the answer is (the answer step, and the label the text opens with) is
`healer.text.answer_step`'s rule, shared with every engine. The rule, so that `answer`,
`probability` and the text always agree:
1. The label is the text's answer word, found by that rule ("**No** —", "In short, yes.").
   In answer-only mode there is no text: the label is the answer step's token.
2. → "uncertain" (refer for review) when there is no label, when the answer mass (P(yes) + P(no)
   at the answer step; 0 when there was no answer step) is below MIN_ANSWER_MASS, or when the
   probability contradicts the label: "yes" needs P(yes) ≥ THRESHOLD, "no" needs
   P(yes) ≤ THRESHOLD (0.5 by default; a lower one, chosen by the evaluation command for a target
   sensitivity, turns more answers into "uncertain" rather than into a confident "no").
   Otherwise the label.
3. The explanation is the first sentence after the yes/no word.
`probability` is always P(yes) read at the answer step (at the first step when there was none),
whatever the answer.
"""

from dataclasses import dataclass
from typing import Literal

from healer.text.answer_step import Label, first_sentence, split_answer

Answer = Literal["yes", "no", "uncertain"]


@dataclass(frozen=True)
class Verdict:
    answer: Answer
    probability: float
    explanation: str
    prediction: str  # the original API's single string, e.g. "Yes. The glands are…"


def decide(
    text: str, p_yes: float, answer_label: Label | None, answer_mass: float, *,
    threshold: float, min_answer_mass: float,
) -> Verdict:
    """The verdict on one model output: its text (empty in answer-only mode), P(yes), the answer
    step's label and how much probability the model put on answering yes or no there."""
    text = text.strip()
    parsed_label, rest = split_answer(text)
    label = parsed_label if text else answer_label
    agrees = (label == "yes" and p_yes >= threshold) or (label == "no" and p_yes <= threshold)
    answered = answer_mass >= min_answer_mass
    answer: Answer = label if agrees and answered else "uncertain"  # type: ignore[assignment]
    explanation = first_sentence(rest) or rest
    prediction = text or answer.capitalize()
    return Verdict(answer, p_yes, explanation, prediction)
