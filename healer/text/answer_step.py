"""Where the answer is in a model's output: the rule every engine and the screening answer share.

The **answer step** is the first of the first ANSWER_WITHIN generated tokens that is a yes/no
variant ("Yes", "▁no", "YES"…) and whose preceding text may precede an answer
(`may_precede_answer`): nothing but openers (whitespace, markdown `*` `_` `#` `>`, quotes,
brackets, dashes, an optional "Answer:"), or, after those, one short lead-in clause closed by a
comma or a colon ("Based on the image, yes"). A yes/no inside a running sentence ("I cannot say
yes or no") is not an answer. Engines read P(yes) and the answer mass at that step; the screening
rule (healer.screening.answers) reads the label from the text by the same rule.

Pure functions over text: no model, no torch, no engine imported.
"""

import re
from collections.abc import Callable, Sequence
from typing import Literal

Label = Literal["yes", "no"]

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
_LEADING_WORD = re.compile(r"^" + _OPENERS + _LEAD_IN + r"\b(yes|no)\b", re.IGNORECASE)
# A full stop, question or exclamation mark that ends a sentence: followed by a space, or at the
# very end of the text unless a digit precedes it (mid-generation, "3." may become "3.5 µm").
_SENTENCE_END = re.compile(r"[.!?](?=\s)|(?<!\d)[.!?]$")


def token_label(token: str) -> Label | None:
    """'yes' or 'no' when a vocabulary token is a variant of that word ("▁Yes", "NO", " no")."""
    word = token.replace("▁", " ").strip().lower()
    return word if word in ("yes", "no") else None  # type: ignore[return-value]


def may_precede_answer(prefix: str) -> bool:
    """True when a yes/no word right after `prefix` (the text generated before it) answers."""
    return _ANSWER_PREFIX.fullmatch(prefix) is not None


def find_answer_step(labels: Sequence[Label | None], text_before: Callable[[int], str]) -> int | None:
    """The answer step among a row's generated tokens, or None. `labels[i]` is token i's yes/no
    label (None for any other token), up to where the model ended its turn; `text_before(i)` is
    the text the tokens before step i decode to."""
    for step, label in enumerate(labels[:ANSWER_WITHIN]):
        if label is not None and may_precede_answer(text_before(step)):
            return step
    return None


def split_answer(text: str) -> tuple[Label | None, str]:
    """The leading yes/no of a text, and what follows it."""
    match = _LEADING_LABEL.match(text)
    if not match:
        return None, text.strip()
    return match.group(1).lower(), text[match.end() :].strip()  # type: ignore[return-value]


def answer_settled(text: str) -> bool:
    """True once more text cannot change the text's leading yes/no: something follows the word
    (until then "Yes" may still become "Yesterday", and "No" "Normal")."""
    match = _LEADING_WORD.match(text)
    return match is not None and match.end() < len(text)


def first_sentence(text: str) -> str | None:
    """The first complete sentence of `text`, or None while it is still unfinished."""
    match = _SENTENCE_END.search(text)
    return text[: match.end()].strip() if match else None


def explanation_complete(text: str) -> bool:
    """True once the text holds its answer word and one finished sentence after it."""
    return first_sentence(split_answer(text)[1]) is not None
