"""The yes/no/uncertain rule, on outputs like the ones MedGemma writes."""

import pytest

from healer.screening.answers import decide
from healer.text.answer_step import explanation_complete, first_sentence, may_precede_answer, split_answer, token_label


def decide_at(text, p_yes, label, answer_mass=0.9, threshold=0.5, min_answer_mass=0.5):
    return decide(text, p_yes, label, answer_mass, threshold=threshold, min_answer_mass=min_answer_mass)


@pytest.mark.parametrize(
    ("text", "answer_label", "p_yes", "answer", "explanation"),
    [
        ("Yes. Malignant glands infiltrate the submucosa.", "yes", 0.91, "yes",
         "Malignant glands infiltrate the submucosa."),
        ("No. The mucosa shows normal crypts without atypia.", "no", 0.08, "no",
         "The mucosa shows normal crypts without atypia."),
        ("**No** — the glands are well formed. Further text.", None, 0.2, "no",
         "the glands are well formed."),
        ("Answer: Yes, there is cribriform architecture with necrosis.", None, 0.7, "yes",
         "there is cribriform architecture with necrosis."),
        # A short lead-in clause closed by a comma or colon, then the answer.
        ("Based on the image, yes. The glands are cribriform.", "yes", 0.8, "yes",
         "The glands are cribriform."),
        ("In short: **No**. Normal crypts.", None, 0.1, "no", "Normal crypts."),
        # A yes or no inside a running sentence is not an answer.
        ("I cannot say yes or no from this image.", None, 0.6, "uncertain",
         "I cannot say yes or no from this image."),
        ("yes", "yes", 0.6, "yes", ""),
        ("YES! Atypical glands.", "yes", 0.8, "yes", "Atypical glands."),
        # The text and the probability disagree: the model is torn, so is the answer.
        ("Yes. Some atypia is present.", "yes", 0.4, "uncertain", "Some atypia is present."),
        ("No. Normal colon.", "no", 0.55, "uncertain", "Normal colon."),
        # Nothing to parse.
        ("The image shows colonic mucosa with 3.5 µm nuclei. More.", None, 0.5, "uncertain",
         "The image shows colonic mucosa with 3.5 µm nuclei."),
        ("I cannot determine this from the image.", None, 0.3, "uncertain",
         "I cannot determine this from the image."),
        ("", None, 0.9, "uncertain", ""),
        # A word that merely starts like "yes" is not a yes.
        ("Yesterday's sample shows nothing.", "yes", 0.9, "uncertain",
         "Yesterday's sample shows nothing."),
        # Cut at MAX_NEW_TOKENS mid-sentence: the unfinished sentence is kept as is.
        ("No. The crypts are regular and the lamina", "no", 0.1, "no",
         "The crypts are regular and the lamina"),
    ],
)
def test_verdict_from_model_text(text, answer_label, p_yes, answer, explanation):
    verdict = decide_at(text, p_yes, answer_label)
    assert verdict.answer == answer
    assert verdict.probability == p_yes
    assert verdict.explanation == explanation
    assert verdict.prediction == text or (text == "" and verdict.prediction == "Uncertain")


@pytest.mark.parametrize(
    ("answer_label", "p_yes", "answer", "prediction"),
    [("yes", 0.8, "yes", "Yes"), ("no", 0.3, "no", "No"), (None, 0.8, "uncertain", "Uncertain"),
     ("no", 0.7, "uncertain", "Uncertain")],
)
def test_answer_only_mode_uses_the_answer_step_token(answer_label, p_yes, answer, prediction):
    verdict = decide_at("", p_yes, answer_label)
    assert (verdict.answer, verdict.explanation, verdict.prediction) == (answer, "", prediction)


@pytest.mark.parametrize(
    ("answer", "p_yes"), [("yes", 0.5), ("no", 0.5), ("yes", 1.0), ("no", 0.0)]
)
def test_probability_at_the_boundary_still_agrees(answer, p_yes):
    verdict = decide_at(f"{answer.capitalize()}.", p_yes, answer)
    assert verdict.answer == answer


@pytest.mark.parametrize(
    ("token", "label"),
    [("Yes", "yes"), ("▁yes", "yes"), ("YES", "yes"), (" No", "no"), ("no", "no"),
     ("▁NO", "no"), ("Yesterday", None), ("not", None), ("", None), ("<eos>", None)],
)
def test_vocabulary_tokens_that_count_as_yes_or_no(token, label):
    assert token_label(token) == label


def test_the_explanation_is_complete_after_one_sentence_past_the_answer():
    assert not explanation_complete("Yes.")
    assert not explanation_complete("Yes. The glands")
    assert not explanation_complete("No. Nuclei measure 3.")  # could still become 3.5
    assert explanation_complete("No. Nuclei measure 3.5 µm. ")
    assert explanation_complete("No. The count is 3. Next")
    assert explanation_complete("Yes. The glands are malignant.")
    assert explanation_complete("The glands are malignant.")


def test_first_sentence_and_split_answer():
    assert first_sentence("One. Two.") == "One."
    assert first_sentence("Unfinished") is None
    assert split_answer("  **Yes**, definitely.") == ("yes", "definitely.")
    assert split_answer("Nothing here.") == (None, "Nothing here.")


@pytest.mark.parametrize(
    ("text", "p_yes", "answer"),
    [("Yes. Atypia.", 0.40, "yes"),        # above a sensitive threshold: a yes stands
     ("No. Normal crypts.", 0.40, "uncertain"),  # the model says no, the threshold says refer
     ("No. Normal crypts.", 0.10, "no"),
     ("Yes. Atypia.", 0.30, "uncertain")],
)
def test_a_lower_threshold_refers_borderline_noes_for_review(text, p_yes, answer):
    label = text.split(".")[0].lower()
    verdict = decide_at(text, p_yes, label, threshold=0.37)
    assert verdict.answer == answer


@pytest.mark.parametrize(
    ("prefix", "answers"),
    [("", True), ("**", True), ("\n\n", True), ('"', True), ("# ", True), ("Answer:", True),
     ("**Answer:** ", True), ("Based on the image,", True), ("In short: ", True),
     ("I cannot say", False), ("The image shows", False), ("The glands are normal. Then,", False),
     ("Based on a long look at every gland, crypt and nucleus in this tile,", False)],
)
def test_what_may_come_before_the_answer_word(prefix, answers):
    assert may_precede_answer(prefix) is answers


@pytest.mark.parametrize(
    ("text", "label", "p_yes", "answer_mass", "answer"),
    [("", "yes", 0.9, 0.95, "yes"),        # a confident model that answers
     ("", "yes", 0.9, 0.30, "uncertain"),  # yes beats no, but the model would rather say something else
     ("", "no", 0.1, 0.49, "uncertain"),   # just below the minimum
     ("", "no", 0.1, 0.50, "no"),          # at the minimum
     ("", None, 0.9, 0.0, "uncertain"),    # never said yes or no within its first tokens
     ("**Yes**. Atypia.", "yes", 0.9, 0.2, "uncertain"),  # the text says yes, the mass says no answer
     ("Based on the image, no.", "no", 0.2, 0.8, "no")],
)
def test_too_little_probability_on_answering_is_uncertain(text, label, p_yes, answer_mass, answer):
    verdict = decide_at(text, p_yes, label, answer_mass=answer_mass, min_answer_mass=0.5)
    assert verdict.answer == answer
    assert verdict.probability == p_yes  # reported as it is, whatever the answer
