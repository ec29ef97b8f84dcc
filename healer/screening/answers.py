"""From the model's raw output to a screening answer: pure functions, no model needed.

The rule, so that `answer`, `probability` and the text always agree:
1. The label is the text's leading word, after markdown and an optional "Answer:" ("**No** —").
   In answer-only mode there is no text: the label is the first token's, when that token is a
   yes/no variant ("Yes", " no", "YES"…).
2. No label → "uncertain". A label the probability contradicts → "uncertain": "yes" needs
   P(yes) ≥ THRESHOLD, "no" needs P(yes) ≤ THRESHOLD (0.5 by default; a lower one, chosen by
   the evaluation command for a target sensitivity, turns more answers into "uncertain", which
   means "refer for review", rather than into a confident "no"). Otherwise the label.
3. The explanation is the first sentence after the yes/no word.
`probability` is always P(yes) from the first token's logits, whatever the answer.
"""

import re
from dataclasses import dataclass
from typing import Literal

Label = Literal["yes", "no"]
Answer = Literal["yes", "no", "uncertain"]

_LEADING_LABEL = re.compile(
    r"^[\s*_#>\"'`(\[-]*(?:answer\s*[:：]\s*[\s*_\"'`]*)?(yes|no)\b[\s*_\"'`)\]]*[.,;:!—–-]*\s*",
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


def decide(text: str, p_yes: float, first_token_label: Label | None, threshold: float = 0.5) -> Verdict:
    """The verdict on one model output: its text (empty in answer-only mode), P(yes) and the
    first generated token's label."""
    text = text.strip()
    parsed_label, rest = split_answer(text)
    label = parsed_label if text else first_token_label
    agrees = (label == "yes" and p_yes >= threshold) or (label == "no" and p_yes <= threshold)
    answer: Answer = label if agrees else "uncertain"  # type: ignore[assignment]
    explanation = first_sentence(rest) or rest
    prediction = text or answer.capitalize()
    return Verdict(answer, p_yes, explanation, prediction)
