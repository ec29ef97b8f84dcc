"""download.py's real path: the real huggingface_hub client against tests/fake_hub.py.

Each test runs `python download.py` as the Dockerfile does, with HF_ENDPOINT pointing at a local
fake Hub that serves the demo model as a gated repo, and reads what a user would read.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_hub import COMMIT, FakeHub
from healer.model import hub as hub_module
from healer.model.demo import write_demo_model
from healer.model.model_dir import MARKER_FILE

ROOT = Path(__file__).resolve().parents[1]
REPO = "google/medgemma-4b-it"
TOKEN = "hf_fakehubtoken1234567890"


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory) -> Path:
    """The demo model as a Hub repo holds it: plus files the service does not need."""
    repo = write_demo_model(tmp_path_factory.mktemp("repo"))
    (repo / MARKER_FILE).unlink()
    (repo / "README.md").write_text("# model card\n")
    (repo / "original").mkdir()
    (repo / "original" / "consolidated.pth").write_bytes(b"\0" * 1024)
    return repo


@pytest.fixture
def repo_files(demo_files, tmp_path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(demo_files, copy)
    return copy


def run_download(hub_url: str, model_dir: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "MY_HF_TOKEN", "MODEL_REVISION")}
    home = model_dir.parent / "home"
    clean.update(HF_ENDPOINT=hub_url, MODEL_DIR=str(model_dir), MODEL_ID=REPO, HOME=str(home),
                 HF_HOME=str(home / "hf"), **env)
    return subprocess.run([sys.executable, "download.py"], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("download.py: error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def test_downloads_only_the_served_files_and_records_the_commit(repo_files, tmp_path):
    model_dir = tmp_path / "model"
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, model_dir, HF_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    assert f"Downloaded google/medgemma-4b-it at commit {COMMIT}" in result.stdout
    names = {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")
             if p.is_file() and ".cache" not in p.parts}
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= names
    assert "README.md" not in names and "original/consolidated.pth" not in names
    marker = json.loads((model_dir / MARKER_FILE).read_text())
    assert marker == {"id": REPO, "revision": COMMIT, "demo": False}
    assert all(auth == f"Bearer {TOKEN}" for method, path, auth in hub.requests if "/resolve/" in path)


def test_an_unpinned_revision_warns_and_names_the_commit_to_pin(repo_files, tmp_path):
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, tmp_path / "model", HF_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("download.py: warning:")]
    assert "MODEL_REVISION is not set" in warning and f"MODEL_REVISION={COMMIT}" in warning


def test_reads_the_same_defaults_as_the_service(monkeypatch):
    for name in ("MODEL_ID", "MODEL_REVISION", "MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    sys.path.insert(0, str(ROOT))
    try:
        import download
    finally:
        sys.path.remove(str(ROOT))
    from healer.settings import Settings

    settings = Settings()
    assert download.model_settings() == (settings.model_id, settings.model_revision, settings.model_dir)


def flip_last_bit(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.mark.parametrize("corrupt, problem", [
    (lambda data: data[:-1], "bytes where the Hub lists"),  # truncated
    (flip_last_bit, "sha256"),  # same size
], ids=["truncated", "one-bit-flipped"])
def test_a_corrupted_shard_fails_the_download_with_one_line(repo_files, tmp_path, corrupt, problem):
    model_dir = tmp_path / "model"
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        hub.served["model.safetensors"] = corrupt(hub.files["model.safetensors"])
        result = run_download(hub.url, model_dir, HF_TOKEN=TOKEN)
    assert_one_line_error(result, "model.safetensors is corrupt", problem, "run download.py again")
    assert not (model_dir / "model.safetensors").exists()  # removed, so a rerun fetches it again
    assert not (model_dir / MARKER_FILE).exists()


def test_a_corrupted_small_file_is_caught_by_its_git_blob_id(repo_files, tmp_path):
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        hub.served["config.json"] = flip_last_bit(hub.files["config.json"])
        result = run_download(hub.url, tmp_path / "model", HF_TOKEN=TOKEN)
    assert_one_line_error(result, "config.json is corrupt", "git blob")


def test_the_token_is_never_written_to_disk(repo_files, tmp_path):
    model_dir = tmp_path / "model"
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        assert run_download(hub.url, model_dir, HF_TOKEN=TOKEN).returncode == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "repo" not in p.relative_to(tmp_path).parts[:1]]
    assert any(p.name == "model.safetensors" for p in written)
    assert not [p for p in written if TOKEN.encode() in p.read_bytes()]


def test_accepts_the_original_my_hf_token_name(repo_files, tmp_path):
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, tmp_path / "model", MY_HF_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr


def test_a_complete_model_dir_is_not_downloaded_again(repo_files, tmp_path):
    model_dir = tmp_path / "model"
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        assert run_download(hub.url, model_dir, HF_TOKEN=TOKEN).returncode == 0
        hub.requests.clear()
        again = run_download(hub.url, model_dir, HF_TOKEN=TOKEN)
        assert again.returncode == 0, again.stderr
        assert "nothing downloaded" in again.stdout
        assert hub.requests == []


def test_an_incomplete_model_dir_is_completed(repo_files, tmp_path):
    model_dir = tmp_path / "model"
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        assert run_download(hub.url, model_dir, HF_TOKEN=TOKEN).returncode == 0
        (model_dir / "model.safetensors").unlink()
        again = run_download(hub.url, model_dir, HF_TOKEN=TOKEN)
    assert again.returncode == 0, again.stderr
    assert (model_dir / "model.safetensors").is_file()


def test_a_pinned_revision_is_downloaded_and_recorded(repo_files, tmp_path):
    model_dir = tmp_path / "model"
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, model_dir, HF_TOKEN=TOKEN, MODEL_REVISION=COMMIT)
    assert result.returncode == 0, result.stderr
    assert json.loads((model_dir / MARKER_FILE).read_text())["revision"] == COMMIT


def test_no_token_for_a_gated_model_says_to_set_hf_token(repo_files, tmp_path):
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, tmp_path / "model")
    assert_one_line_error(result, "gated", "HF_TOKEN", f"{hub.url}/{REPO}")
    assert hub.file_downloads() == []


def test_a_refused_token_says_the_licence_must_be_accepted(repo_files, tmp_path):
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, tmp_path / "model", HF_TOKEN="hf_not_the_right_one")
    line = assert_one_line_error(result, "403", "licence must be accepted", f"{hub.url}/{REPO}")
    assert "hf_not_the_right_one" not in line


def test_an_unknown_repo_is_reported_as_not_found(repo_files, tmp_path):
    with FakeHub(repo_files, "someone/else", token=TOKEN) as hub:
        result = run_download(hub.url, tmp_path / "model", HF_TOKEN=TOKEN)
    assert_one_line_error(result, "google/medgemma-4b-it not found", "MODEL_ID")


def test_an_unknown_revision_names_model_revision(repo_files, tmp_path):
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, tmp_path / "model", HF_TOKEN=TOKEN, MODEL_REVISION="v9")
    assert_one_line_error(result, "'v9' not found", "MODEL_REVISION")


def test_an_unreachable_hub_fails_in_seconds(tmp_path):
    with FakeHub(tmp_path, REPO) as hub:  # bind a port, then close it: nothing listens there
        url = hub.url
    started = time.monotonic()
    result = run_download(url, tmp_path / "model", HF_TOKEN=TOKEN)
    assert time.monotonic() - started < 30
    assert_one_line_error(result, "cannot reach the Hub", url)


def test_a_shard_missing_from_the_repo_fails_verification(repo_files, tmp_path):
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    (repo_files / "model.safetensors.index.json").write_text(json.dumps(index))
    (repo_files / "model.safetensors").rename(repo_files / "model-00001-of-00002.safetensors")
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, tmp_path / "model", HF_TOKEN=TOKEN)
    assert_one_line_error(result, "incomplete", "model-00002-of-00002.safetensors")
    assert not (tmp_path / "model" / MARKER_FILE).exists()


def test_a_processor_that_does_not_load_fails_verification(repo_files, tmp_path):
    (repo_files / "processor_config.json").write_text("{ not json")
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        result = run_download(hub.url, tmp_path / "model", HF_TOKEN=TOKEN)
    assert_one_line_error(result, "processor", "does not load")


def test_too_little_disk_is_reported_before_downloading(repo_files, tmp_path, monkeypatch):
    monkeypatch.setattr(hub_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 0))
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        with pytest.raises(hub_module.DownloadError, match="disk full: the model needs"):
            hub_module.download_model(REPO, None, tmp_path / "model", TOKEN, endpoint=hub.url)
    assert hub.file_downloads() == []


def test_a_full_disk_during_the_download_is_one_clear_error(repo_files, tmp_path, monkeypatch):
    def no_space(**kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hub_module, "snapshot_download", no_space)
    with FakeHub(repo_files, REPO, token=TOKEN) as hub:
        with pytest.raises(hub_module.DownloadError, match="disk full while writing"):
            hub_module.download_model(REPO, None, tmp_path / "model", TOKEN, endpoint=hub.url)
