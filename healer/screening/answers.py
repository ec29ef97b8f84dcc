"""From the model's raw output to a screening answer: pure functions, no model needed.

Where the answer is: the **answer step**, the first of the first ANSWER_WITHIN generated tokens
that is a yes/no variant ("Yes", "▁no", "YES"…) and whose preceding text may precede an answer
(`may_precede_answer`): nothing but openers (whitespace, markdown `*` `_` `#` `>`, quotes,
brackets, dashes, an optional "Answer:"), or, after those, one short lead-in clause closed by a
comma or a colon ("Based on the image, yes"). A yes/no inside a running sentence ("I cannot say
yes or no") is not an answer. The engine reads P(yes) and the answer mass at that step.

The rule, so that `answer`, `probability` and the text always agree:
1. The label is the text's answer word, found by the same rule ("**No** —", "In short, yes.").
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

import re
from dataclasses import dataclass
from typing import Literal

Label = Literal["yes", "no"]
Answer = Literal["yes", "no", "uncertain"]

# The answer word comes within this many generated tokens or not at all: enough for markdown,
# "Answer:" or a short lead-in clause before it (the phrase demo model answers at its 6th), few
# enough that answer-only mode stays a handful of decode steps, far cheaper than an explanation.
ANSWER_WITHIN = 8

_OPENERS = r"[\s*_#>\"'`(\[-]*(?:answer\s*[:：]\s*[\s*_\"'`]*)?"
# One lead-in clause, closed by a comma or colon, within one sentence: "Based on the image, ".
_LEAD_IN = r"(?:[^.!?\n]{1,60}?[,:：][\s*_\"'`]*)?"
_ANSWER_PREFIX = re.compile(_OPENERS + _LEAD_IN, re.IGNORECASE)
_LEADING_LABEL = re.compile(
    r"^" + _OPENERS + _LEAD_IN + r"\b(yes|no)\b[\s*_\"'`)\]]*[.,;:!—–-]*\s*",
    re.IGNORECASE,
)
# A full stop, question or exclamation mark that ends a sentence: followed by a space, or at the
# very end of the text unless a digit precedes it (mid-generation, "3." may become "3.5 µm").
_SENTENCE_END = re.compile(r"[.!?](?=\s)|(?<!\d)[.!?]$")


@dataclass(frozen=True)
class Verdict:
    answer: Answer
    probability: float
    explanation: str
    prediction: str  # the original API's single string, e.g. "Yes. The glands are…"


def token_label(token: str) -> Label | None:
    """'yes' or 'no' when a vocabulary token is a variant of that word ("▁Yes", "NO", " no")."""
    word = token.replace("▁", " ").strip().lower()
    return word if word in ("yes", "no") else None  # type: ignore[return-value]


def may_precede_answer(prefix: str) -> bool:
    """True when a yes/no word right after `prefix` (the text generated before it) answers."""
    return _ANSWER_PREFIX.fullmatch(prefix) is not None


def split_answer(text: str) -> tuple[Label | None, str]:
    """The leading yes/no of a text, and what follows it."""
    match = _LEADING_LABEL.match(text)
    if not match:
        return None, text.strip()
    return match.group(1).lower(), text[match.end() :].strip()  # type: ignore[return-value]


def first_sentence(text: str) -> str | None:
    """The first complete sentence of `text`, or None while it is still unfinished."""
    match = _SENTENCE_END.search(text)
    return text[: match.end()].strip() if match else None


def explanation_complete(text: str) -> bool:
    """True once the text holds its answer word and one finished sentence after it."""
    return first_sentence(split_answer(text)[1]) is not None


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
