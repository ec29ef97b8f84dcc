"""The answer rule on Gemma 3's real vocabulary (the demo model carries it, as MedGemma does):
where the answer step is, for the tokens the real tokenizer makes of what a model writes."""

import pytest

from healer.model.medgemma import MedGemmaEngine
from healer.screening.answers import decide
from tests.conftest import demo_settings


@pytest.fixture(scope="module")
def engine(demo_model_dir) -> MedGemmaEngine:
    return MedGemmaEngine.load(demo_settings(demo_model_dir))


def pieces(engine, text: str) -> list[str]:
    return engine.tokenizer.convert_ids_to_tokens(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_step(engine, text: str) -> tuple[int | None, str | None]:
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    step = engine.answer_step(ids)
    return step, None if step is None else engine.tokenizer.convert_ids_to_tokens(ids[step])


def test_it_is_gemma_3s_vocabulary_with_medgemmas_image_tokens(engine):
    tokenizer = engine.tokenizer
    assert len(tokenizer) == 262_145
    ids = tokenizer.convert_tokens_to_ids(
        ["<start_of_turn>", "<end_of_turn>", "\n\n", "<start_of_image>", "<end_of_image>", "<image_soft_token>"])
    assert ids == [105, 106, 108, 255999, 256000, 262144]


def test_every_yes_and_no_piece_of_the_vocabulary_is_an_answer_token(engine):
    names = engine.tokenizer.convert_ids_to_tokens
    assert sorted(names(engine.yes_ids)) == sorted(["Yes", "yes", "YES", "▁Yes", "▁yes", "▁YES"])
    assert sorted(names(engine.no_ids)) == sorted(["No", "no", "NO", "▁No", "▁no", "▁NO"])


@pytest.mark.parametrize(("text", "split", "step", "label"), [
    ("**Yes**", ["**", "Yes", "**"], 1, "Yes"),
    ("**Answer:** No", ["**", "Answer", ":**", "▁No"], 3, "▁No"),
    ("Answer: yes", ["Answer", ":", "▁yes"], 2, "▁yes"),
    ("> Yes", [">", "▁Yes"], 1, "▁Yes"),
    ('"Yes"', ['"', "Yes", '"'], 1, "Yes"),
    ("- No.", ["-", "▁No", "."], 1, "▁No"),
    ("(yes)", ["(", "yes", ")"], 1, "yes"),
    ("Notably, no.", ["Notably", ",", "▁no", "."], 2, "▁no"),
    ("Nonetheless, yes.", ["Nonetheless", ",", "▁yes", "."], 2, "▁yes"),
])
def test_openers_made_of_real_tokens_lead_to_the_answer_step(engine, text, split, step, label):
    assert pieces(engine, text) == split  # how Gemma 3's tokenizer writes it
    assert answer_step(engine, text) == (step, label)


@pytest.mark.parametrize(("text", "first_piece"), [
    ("Normal glands.", "Normal"),
    ("Nothing abnormal is seen.", "Nothing"),
    ("Yesterday's biopsy showed the same.", "Yesterday"),
    ("None of the glands is atypical.", "None"),
    ("Node involvement cannot be judged.", "Node"),
    ("Nodes are not seen.", "Nodes"),
    ("Non-neoplastic mucosa.", "Non"),
    ("NOTE: poor staining.", "NOTE"),
    ("Nope.", "Nope"),
])
def test_words_that_begin_like_an_answer_are_single_pieces_and_not_answers(engine, text, first_piece):
    assert pieces(engine, text)[0] == first_piece
    assert answer_step(engine, text) == (None, None)
    assert decide(text, 0.9, None, 0.0, threshold=0.5, min_answer_mass=0.5).answer == "uncertain"


def test_a_yes_inside_a_sentence_is_not_an_answer(engine):
    assert answer_step(engine, "I cannot say yes or no from this image.") == (None, None)
