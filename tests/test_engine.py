"""The real engine (transformers, the same code that loads MedGemma) on the tiny demo model."""

import gc
from pathlib import Path

import pytest
import torch
from PIL import Image

from healer.model.cpu_int8 import Int8Linear
from healer.model.demo import write_demo_model
from healer.model.engine import Query
from healer.model.medgemma import MedGemmaEngine, _FirstSentenceStop, resolve_device, usable_cpus
from healer.screening.prompts import DEFAULT_QUESTION, SYSTEM_PROMPT
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
    assert generation.first_token_label in ("yes", "no", None)
    assert set(generation.timings_ms) == {"preprocess", "model"}


def test_p_yes_is_the_yes_share_of_the_first_token_distribution(engine, tiles):
    query = Query(tiles[0], DEFAULT_QUESTION)
    with torch.inference_mode():
        logits = engine.model(**engine._inputs([query])).logits[0, -1].float()
    probs = logits.softmax(-1)
    expected = probs[engine.yes_ids].sum() / (probs[engine.yes_ids].sum() + probs[engine.no_ids].sum())
    [generation] = engine.generate([query])
    assert generation.p_yes == pytest.approx(expected.item(), abs=1e-5)


def test_a_batch_gives_each_image_its_own_answer_equal_to_its_solo_answer(engine, tiles):
    queries = [Query(tiles[0], DEFAULT_QUESTION), Query(tiles[1], "Is there tumour?")]
    batch = engine.generate(queries)
    solo = [engine.generate([query])[0] for query in queries]
    assert len(batch) == 2
    for together, alone in zip(batch, solo):
        assert together.p_yes == pytest.approx(alone.p_yes, abs=5e-3)  # bf16 noise
    assert batch[0].p_yes != pytest.approx(batch[1].p_yes, abs=1e-6)  # the image matters


def test_answer_only_mode_gives_the_same_probability_without_text(engine, tiles):
    explained, answer_only = (
        engine.generate([Query(tiles[1], DEFAULT_QUESTION, explain=wanted)])[0] for wanted in (True, False)
    )
    assert answer_only.text == ""
    assert answer_only.p_yes == pytest.approx(explained.p_yes, abs=5e-3)
    assert answer_only.first_token_label == explained.first_token_label


def test_generation_never_exceeds_max_new_tokens(demo_model_dir, tiles, monkeypatch):
    engine = MedGemmaEngine.load(demo_settings(demo_model_dir, max_new_tokens=3))
    lengths = []
    generate = engine.model.generate

    def spy(**kwargs):
        out = generate(**kwargs)
        lengths.append(out.sequences.shape[1] - kwargs["input_ids"].shape[1])
        return out

    monkeypatch.setattr(engine.model, "generate", spy)
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
    stop = _FirstSentenceStop(tokenizer, prompt_length=len(prompt), explain=[True, True, False])
    assert stop(ids, None).tolist() == [True, False, True]


def test_int8_on_the_cpu_holds_the_language_model_in_int8_and_keeps_the_vision_tower(demo_model_dir, tiles, engine):
    int8 = MedGemmaEngine.load(demo_settings(demo_model_dir, quantization="int8"))
    modules = dict(int8.model.named_modules())
    quantized = [name for name, m in modules.items() if isinstance(m, Int8Linear)]
    assert "lm_head" in quantized
    assert all(name.startswith("model.language_model.") for name in quantized if name != "lm_head")
    assert not any(isinstance(m, torch.nn.Linear) for n, m in modules.items() if "language_model" in n)
    assert any(isinstance(m, torch.nn.Linear) for n, m in modules.items() if "vision_tower" in n)
    assert int8.info.quantization == "int8"
    # The same answer as bf16, within int8 rounding: the kernels compute the model, not noise.
    query = Query(tiles[0], DEFAULT_QUESTION)
    [eight], [sixteen] = int8.generate([query]), engine.generate([query])
    assert eight.p_yes == pytest.approx(sixteen.p_yes, abs=0.05)
    assert eight.first_token_label == sixteen.first_token_label


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
