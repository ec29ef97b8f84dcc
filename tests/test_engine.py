"""The real engine (transformers, the same code that loads MedGemma) on the tiny demo model."""

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from healer.model.cpu_int8 import Int8RowsLinear, PackedInt8Linear
from healer.model.cpu_matmul import Fp32Linear
from healer.model.demo import write_demo_model
from healer.model.engine import Query
from healer.model.medgemma import MedGemmaEngine, _LastLogits, _RowStop, resolve_device, usable_cpus
from healer.text.answer_step import ANSWER_WITHIN
from healer.text.prompts import DEFAULT_QUESTION, SYSTEM_PROMPT
from tests.conftest import demo_settings


@pytest.fixture(scope="module")
def engine(demo_model_dir) -> MedGemmaEngine:
    return MedGemmaEngine.load(demo_settings(demo_model_dir))


@pytest.fixture(scope="module")
def tiles(he_tile) -> list[Image.Image]:
    return [he_tile.crop((0, 0, 500, 500)), he_tile.crop((500, 500, 1000, 1000))]


def test_loads_the_demo_model_and_says_what_it_is(engine):
    assert (engine.info.id, engine.info.demo) == ("healer/tiny-random-gemma3", True)
    assert (engine.info.device, engine.info.quantization) == ("cpu", "none")
    assert engine.model.dtype == torch.bfloat16


def test_finds_every_yes_and_no_variant_in_the_vocabulary(engine):
    decode = engine.tokenizer.convert_ids_to_tokens
    assert {t.replace("▁", "") for t in decode(engine.yes_ids)} == {"Yes", "yes", "YES"}
    assert {t.replace("▁", "") for t in decode(engine.no_ids)} == {"No", "no", "NO"}
    assert any(t.startswith("▁") for t in decode(engine.yes_ids))


def test_prompt_is_the_chat_template_with_one_bos_and_256_image_tokens(engine, tiles):
    inputs = engine._inputs([Query(tiles[0], "Short?"), Query(tiles[1], DEFAULT_QUESTION)])
    tokenizer = engine.tokenizer
    image_token = tokenizer.convert_tokens_to_ids("<image_soft_token>")
    for row in inputs["input_ids"]:
        assert (row == image_token).sum() == 256
        assert (row == tokenizer.bos_token_id).sum() == 1
    # Left padding: the shorter prompt is padded at the start, so both end on the model turn.
    assert inputs["input_ids"][0, 0] == tokenizer.pad_token_id
    text = tokenizer.decode(inputs["input_ids"][1], skip_special_tokens=False)
    assert SYSTEM_PROMPT in text and DEFAULT_QUESTION in text
    assert text.rstrip().endswith("<start_of_turn>model")
    assert inputs["pixel_values"].shape == (2, 3, 896, 896)


def test_answers_a_real_he_tile_with_a_probability(engine, tiles):
    [generation] = engine.generate([Query(tiles[0], DEFAULT_QUESTION)])
    assert 0.0 <= generation.p_yes <= 1.0
    assert generation.answer_label in ("yes", "no", None)
    assert 0.0 <= generation.answer_mass <= 1.0
    assert set(generation.timings_ms) == {"preprocess", "model"}


def by_hand(engine, query, prefix_ids):
    """P(yes) and P(yes) + P(no) from a plain forward pass on the prompt + `prefix_ids`."""
    inputs = engine._inputs([query])
    prefix = torch.tensor([prefix_ids], dtype=inputs["input_ids"].dtype)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], prefix], dim=1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(prefix)], dim=1)
    if "token_type_ids" in inputs:
        inputs["token_type_ids"] = torch.cat([inputs["token_type_ids"], torch.zeros_like(prefix)], dim=1)
    with torch.inference_mode():
        probs = engine.model(**inputs).logits[0, -1].float().softmax(-1)
    yes, no = probs[engine.yes_ids].sum().item(), probs[engine.no_ids].sum().item()
    return yes / (yes + no), yes + no


def test_p_yes_is_the_yes_share_where_the_default_demo_answers(engine, tiles):
    query = Query(tiles[0], DEFAULT_QUESTION)
    [generation] = engine.generate([query])
    assert generation.answer_step == 0  # the default demo answers with its first token
    p_yes, mass = by_hand(engine, query, [])
    assert generation.p_yes == pytest.approx(p_yes, abs=1e-5)
    assert generation.answer_mass == pytest.approx(mass, abs=1e-5)


# The three scripted openings (healer.model.demo.OPENINGS): the text each writes in full, the
# step where the answer word is, and the tokens before it.
OPENINGS = {
    "bold": ("**Yes.", 1),
    "phrase": ("Based on the image, yes.", 5),
    "never": ("I cannot tell from this image.", None),
}


@pytest.fixture(scope="module", params=list(OPENINGS))
def opening(request, tmp_path_factory):
    directory = write_demo_model(tmp_path_factory.mktemp(f"demo-{request.param}"), opening=request.param)
    return request.param, MedGemmaEngine.load(demo_settings(directory))


def test_p_yes_is_read_where_the_answer_word_is_generated(opening, tiles):
    name, engine = opening
    text, step = OPENINGS[name]
    query = Query(tiles[0], DEFAULT_QUESTION)
    explained, answer_only = engine.generate([query, Query(tiles[0], DEFAULT_QUESTION, explain=False)])
    assert explained.text == text
    assert (explained.answer_step, answer_only.answer_step) == (step, step)
    new_ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    if step is None:
        assert (answer_only.answer_label, answer_only.answer_mass) == (None, 0.0)
        p_yes, _ = by_hand(engine, query, [])  # reported from the first step
        assert answer_only.p_yes == pytest.approx(p_yes, abs=5e-3)
        return
    p_yes, mass = by_hand(engine, query, new_ids[:step])
    for generation in (explained, answer_only):
        assert generation.answer_label == "yes"
        assert generation.p_yes == pytest.approx(p_yes, abs=5e-3)  # bf16: cached vs full forward
        assert generation.answer_mass == pytest.approx(mass, abs=5e-3)
    assert mass > 0.9 and 0.6 < p_yes < 0.9  # a clear answer, not a certain one
    _, first_step_mass = by_hand(engine, query, [])
    assert first_step_mass < 0.01  # where the old engine read it: the ratio of two negligible numbers


def record_generated_lengths(engine, monkeypatch) -> list[int]:
    """The number of tokens each `model.generate` call of `engine` generates, as it runs."""
    lengths = []
    generate = engine.model.generate

    def spy(**kwargs):
        out = generate(**kwargs)
        lengths.append(out.sequences.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(engine.model, "generate", spy)
    return lengths


def test_answer_only_mode_stops_at_the_answer_step(opening, tiles, monkeypatch):
    name, engine = opening
    _, step = OPENINGS[name]
    lengths = record_generated_lengths(engine, monkeypatch)
    engine.generate([Query(tiles[0], DEFAULT_QUESTION, explain=False)])
    # Up to and including the answer word; never answering, up to the end of its turn (8 tokens).
    assert lengths == [step + 1 if step is not None else ANSWER_WITHIN]


def test_the_answer_step_search_stops_after_a_few_tokens(engine):
    ids = engine.tokenizer(["Based on the image,  yes", "Based on the image, and on its colours, no",
                            "**No", "I cannot say yes"], add_special_tokens=False)["input_ids"]
    assert [engine.answer_step(row) for row in ids] == [len(ids[0]) - 1, None, len(ids[2]) - 1, None]
    assert all(len(row) > ANSWER_WITHIN for row in ids[1:2])  # its "no" comes too late


def test_a_batch_gives_each_image_its_own_answer_equal_to_its_solo_answer(engine, tiles):
    queries = [Query(tiles[0], DEFAULT_QUESTION), Query(tiles[1], "Is there tumour?")]
    batch = engine.generate(queries)
    solo = [engine.generate([query])[0] for query in queries]
    assert len(batch) == 2
    for together, alone in zip(batch, solo):
        assert together.p_yes == pytest.approx(alone.p_yes, abs=5e-3)  # bf16 noise
        assert together.answer_mass == pytest.approx(alone.answer_mass, abs=5e-3)


def test_the_image_matters(engine, tiles):
    same_question = [Query(tile, DEFAULT_QUESTION, explain=False) for tile in tiles]
    first, second = engine.generate(same_question)
    assert first.p_yes != pytest.approx(second.p_yes, abs=1e-3)


def test_a_batch_of_rows_answering_at_different_steps_matches_each_alone(engine, tiles):
    """Rows of one batch may find their answer at different steps (here: a default demo row at
    its first token beside itself asked to explain, which runs on past its answer)."""
    queries = [Query(tiles[0], DEFAULT_QUESTION, explain=False), Query(tiles[1], "Tumour?"),
               Query(tiles[1], DEFAULT_QUESTION, explain=False)]
    batch = engine.generate(queries)
    for together, query in zip(batch, queries):
        [alone] = engine.generate([query])
        assert together.answer_step == alone.answer_step
        assert together.p_yes == pytest.approx(alone.p_yes, abs=5e-3)


def test_answer_only_mode_gives_the_same_probability_without_text(engine, tiles):
    explained, answer_only = (
        engine.generate([Query(tiles[1], DEFAULT_QUESTION, explain=wanted)])[0] for wanted in (True, False)
    )
    assert answer_only.text == ""
    assert answer_only.p_yes == pytest.approx(explained.p_yes, abs=5e-3)
    assert answer_only.answer_label == explained.answer_label
    assert answer_only.answer_mass == pytest.approx(explained.answer_mass, abs=5e-3)


def test_generation_never_exceeds_max_new_tokens(demo_model_dir, tiles, monkeypatch):
    engine = MedGemmaEngine.load(demo_settings(demo_model_dir, max_new_tokens=3))
    lengths = record_generated_lengths(engine, monkeypatch)
    engine.generate([Query(tiles[0], DEFAULT_QUESTION)])
    assert 1 <= lengths[0] <= 3


def test_stops_each_row_at_the_end_of_its_first_sentence(engine):
    tokenizer = engine.tokenizer
    prompt = tokenizer("<bos>prompt", add_special_tokens=False)["input_ids"]
    texts = ["Yes. The glands are malignant.", "No. The glands", "Yes. The glands are malignant."]
    new = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, new))
    # As in generate: one prompt length for every row, finished rows padded on the right.
    ids = torch.tensor([prompt + n + [tokenizer.pad_token_id] * (width - len(n)) for n in new])
    queries = [Query(Image.new("RGB", (8, 8)), "?", explain=explain) for explain in (True, True, False)]
    stop = _RowStop(engine, len(prompt), queries, _LastLogits())
    assert stop(ids, None).tolist() == [True, False, True]  # the third: answer-only, "Yes" found


def test_int8_on_the_cpu_holds_the_language_model_in_int8_and_keeps_the_vision_tower(demo_model_dir, tiles, engine):
    int8 = MedGemmaEngine.load(demo_settings(demo_model_dir, quantization="int8"))
    modules = dict(int8.model.named_modules())
    quantized = [name for name, m in modules.items() if isinstance(m, (PackedInt8Linear, Int8RowsLinear))]
    assert "lm_head" in quantized
    assert all(name.startswith("model.language_model.") for name in quantized if name != "lm_head")
    assert not any(isinstance(m, torch.nn.Linear) for n, m in modules.items() if "language_model" in n)
    # The tower stays bf16: plain layers, or on a CPU without bf16 hardware layers computing in fp32.
    vision = [m for n, m in modules.items() if "vision_tower" in n and isinstance(m, (torch.nn.Linear, Fp32Linear))]
    assert vision and all(m.weight.dtype == torch.bfloat16 for m in vision)
    assert int8.info.quantization == "int8"
    # The same next-token logits as bf16, within int8 rounding: the kernels compute the model.
    query = Query(tiles[0], DEFAULT_QUESTION)
    with torch.inference_mode():
        eight, sixteen = (e.model(**e._inputs([query])).logits[0, -1].float() for e in (int8, engine))
    assert ((eight - sixteen).norm() / sixteen.norm()).item() < 0.05
    assert eight.argmax() == sixteen.argmax()
    [generation] = int8.generate([query])
    assert 0.0 <= generation.p_yes <= 1.0


def test_refuses_cuda_when_there_is_none():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert resolve_device("auto") == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")


@pytest.mark.parametrize(("cpu_max", "expected"), [("max 100000", 2), ("100000 100000", 1),
                                                   ("150000 100000", 1), ("50000 100000", 1)])
def test_threads_respect_the_cgroup_cpu_quota(tmp_path, monkeypatch, cpu_max, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert usable_cpus(tmp_path / "cpu.max") == expected


def test_int8_on_the_cpu_keeps_no_weight_mapped_from_the_checkpoint(tmp_path):
    """bf16 serves from the memory-mapped checkpoint (8 GiB file-backed at full size); int8
    copies what it keeps, so the mapping must close instead of staying resident beside it."""
    model_dir = write_demo_model(tmp_path / "model")  # a copy of its own: no other test maps it

    def mapped() -> bool:
        return str(model_dir) in Path("/proc/self/maps").read_text()

    bf16 = MedGemmaEngine.load(demo_settings(model_dir, quantization="none"))
    assert mapped()
    del bf16
    gc.collect()
    int8 = MedGemmaEngine.load(demo_settings(model_dir, quantization="int8"))
    gc.collect()
    assert not mapped()
    assert int8.info.quantization == "int8"


def test_a_confident_answer_stays_below_certainty(engine):
    """P(yes) comes from float32 log-odds through a float64 sigmoid: at a gap of ~28 logits the
    float32 sigmoid says exactly 1.0, and every confident tile would tie in the ROC."""
    logits = torch.full((1, len(engine.tokenizer)), -10.0, dtype=torch.bfloat16)
    logits[0, engine.yes_ids[0]] = 20.0
    [p_yes], [mass] = engine._read_answers(logits)
    gap = 30.0 - torch.log(torch.tensor(float(len(engine.no_ids)))).item()
    assert torch.sigmoid(torch.tensor(gap)).item() == 1.0  # what float32 would report
    assert p_yes < 1.0 and 1.0 - p_yes == pytest.approx(torch.exp(torch.tensor(-gap, dtype=torch.float64)).item(), rel=1e-3)
    assert mass == pytest.approx(1.0, abs=1e-6)


def test_torch_threads_sleep_at_barriers_instead_of_spinning():
    """Importing the engine (as the server does) loads OpenMP with a passive wait policy, unless
    the environment says otherwise: libgomp reports its spin count when asked to display it."""

    def spin_count(**env) -> str:
        clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        shown = subprocess.run([sys.executable, "-c", "import healer.model.medgemma"], capture_output=True,
                               text=True, env={**clean, "OMP_DISPLAY_ENV": "VERBOSE", **env}, check=True)
        return next(line.split("=")[1].strip(" '") for line in shown.stderr.splitlines() if "GOMP_SPINCOUNT" in line)

    assert spin_count() == "0"
    assert spin_count(OMP_WAIT_POLICY="ACTIVE") != "0"
