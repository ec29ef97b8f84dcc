"""build.sh and deploy.sh against a fake `gcloud` that records its arguments.

PATH holds only the fake gcloud and the few tools the scripts use (bash, git, dirname, date),
so the real gcloud on a developer's machine is never reached. The fake answers like gcloud:
`auth list` prints the active account (FAKE_ACCOUNT), `config get-value project` the project
(FAKE_PROJECT), and `describe` fails for whatever FAKE_MISSING names (secret, repo, image).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_GCLOUD = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
missing = os.environ.get("FAKE_MISSING", "").split()
if args[:2] == ["auth", "list"]:
    print(os.environ.get("FAKE_ACCOUNT", ""))
elif args[:3] == ["config", "get-value", "project"]:
    print(os.environ.get("FAKE_PROJECT", ""))
elif args[:2] == ["secrets", "describe"] and "secret" in missing:
    sys.exit("ERROR: NOT_FOUND: Secret not found")
elif args[:3] == ["artifacts", "repositories", "describe"] and "repo" in missing:
    sys.exit("ERROR: NOT_FOUND: Repository not found")
elif args[:4] == ["artifacts", "docker", "images", "describe"] and "image" in missing:
    sys.exit("ERROR: NOT_FOUND: Image not found")
elif args[:3] == ["run", "services", "describe"]:
    print("https://healer-medgemma-service-abc-ew.a.run.app")
"""


@pytest.fixture
def gcloud(tmp_path):
    """Runs a script with the fake gcloud; returns (result, the gcloud calls it made)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "git", "dirname", "date"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    fake = bin_dir / "gcloud"
    fake.write_text(FAKE_GCLOUD)
    fake.chmod(0o755)
    log = tmp_path / "gcloud.log"

    def run(script: str, installed: bool = True, **env: str):
        if not installed:
            fake.unlink()
        environment = {"PATH": str(bin_dir), "HOME": str(tmp_path), "FAKE_LOG": str(log),
                       "FAKE_ACCOUNT": "dev@example.com", "FAKE_PROJECT": "", **env}
        result = subprocess.run([str(ROOT / script)], cwd=tmp_path, env=environment,
                                capture_output=True, text=True, timeout=30)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return result, calls

    return run


def command(calls: list[list[str]], *prefix: str) -> list[str]:
    matching = [call for call in calls if call[: len(prefix)] == list(prefix)]
    assert len(matching) == 1, f"expected one `gcloud {' '.join(prefix)}` in {calls}"
    return matching[0]


def flag(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


# --- build.sh -----------------------------------------------------------------------------------

def test_build_submits_cloudbuild_with_the_commit_tag_and_model(gcloud):
    result, calls = gcloud("build.sh", PROJECT_ID="proj-1", TAG="abc123", MODEL_REVISION="f00d",
                           HF_TOKEN="hf_local_secret")
    assert result.returncode == 0, result.stderr
    submit = command(calls, "builds", "submit")
    assert flag(submit, "--config") == "cloudbuild.yaml"
    assert flag(submit, "--project") == "proj-1"
    assert flag(submit, "--region") == "europe-west1"
    substitutions = dict(item.split("=", 1) for item in flag(submit, "--substitutions").split(","))
    assert substitutions == {
        "_IMAGE": "europe-west1-docker.pkg.dev/proj-1/healer-medgemma/healer-medgemma",
        "_TAG": "abc123", "_MODEL_ID": "google/medgemma-4b-it", "_MODEL_REVISION": "f00d",
        "_MODEL_DIR": "/app/model", "_TORCH_VARIANT": "cpu", "_HF_SECRET": "hf-token",
    }
    assert "hf_local_secret" not in json.dumps(calls)  # Cloud Build reads it from Secret Manager


def test_build_gpu_profile_builds_a_cuda_image(gcloud):
    result, calls = gcloud("build.sh", PROJECT_ID="proj-1", PROFILE="gpu", TAG="t")
    assert result.returncode == 0, result.stderr
    substitutions = flag(command(calls, "builds", "submit"), "--substitutions")
    assert "_TORCH_VARIANT=cu128" in substitutions
    assert "/healer-medgemma/healer-medgemma-gpu," in substitutions


def test_build_takes_the_project_from_gcloud_config(gcloud):
    result, calls = gcloud("build.sh", FAKE_PROJECT="from-config", TAG="t")
    assert result.returncode == 0, result.stderr
    assert flag(command(calls, "builds", "submit"), "--project") == "from-config"


def test_build_creates_the_artifact_registry_repository_when_missing(gcloud):
    result, calls = gcloud("build.sh", PROJECT_ID="p", TAG="t", FAKE_MISSING="repo")
    assert result.returncode == 0, result.stderr
    create = command(calls, "artifacts", "repositories", "create")
    assert create[3] == "healer-medgemma" and "--repository-format=docker" in create


def test_build_without_the_secret_says_how_to_create_it(gcloud):
    result, calls = gcloud("build.sh", PROJECT_ID="p", FAKE_MISSING="secret")
    assert result.returncode == 1
    assert "secret hf-token not found in p" in result.stderr
    assert "gcloud secrets create hf-token --data-file=- --project p" in result.stderr
    assert not [call for call in calls if call[:2] == ["builds", "submit"]]


@pytest.mark.parametrize("script", ["build.sh", "deploy.sh"])
def test_without_gcloud_says_to_install_it(gcloud, script):
    result, _ = gcloud(script, installed=False, PROJECT_ID="p")
    assert result.returncode == 1
    assert f"{script}: error: gcloud is not installed" in result.stderr


@pytest.mark.parametrize("script", ["build.sh", "deploy.sh"])
def test_not_logged_in_says_to_log_in(gcloud, script):
    result, calls = gcloud(script, PROJECT_ID="p", FAKE_ACCOUNT="")
    assert result.returncode == 1
    assert "not logged in: run gcloud auth login" in result.stderr
    assert [call[:2] for call in calls] == [["auth", "list"]]


@pytest.mark.parametrize("script", ["build.sh", "deploy.sh"])
def test_no_project_says_how_to_set_one(gcloud, script):
    result, _ = gcloud(script)
    assert result.returncode == 1
    assert "no project: set PROJECT_ID" in result.stderr
    assert "gcloud config set project" in result.stderr


# --- deploy.sh ----------------------------------------------------------------------------------

def test_deploy_cpu_profile_is_private_sized_for_int8_and_probed_on_health(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="proj-1")
    assert result.returncode == 0, result.stderr
    deploy = command(calls, "run", "deploy")
    assert deploy[2] == "healer-medgemma-service"
    assert flag(deploy, "--image") == (
        "europe-west1-docker.pkg.dev/proj-1/healer-medgemma/healer-medgemma:latest")
    assert flag(deploy, "--region") == "europe-west1"
    assert flag(deploy, "--cpu") == "8"
    assert flag(deploy, "--memory") == "16Gi"  # int8 peaked at ~10.7 GiB with a batch of four
    assert flag(deploy, "--min-instances") == "1"
    assert flag(deploy, "--concurrency") == "8"  # a batch of MAX_BATCH_SIZE=4 in flight + MAX_QUEUE=4 waiting
    assert "QUANTIZATION=int8" in flag(deploy, "--set-env-vars")
    assert "MAX_QUEUE=4" in flag(deploy, "--set-env-vars")
    probe = dict(item.split("=") for item in flag(deploy, "--startup-probe").split(","))
    assert probe["httpGet.path"] == "/"
    budget = int(probe["initialDelaySeconds"]) + int(probe["periodSeconds"]) * int(probe["failureThreshold"])
    assert budget >= 180  # model load + warm-up on CPU takes minutes
    assert int(probe["initialDelaySeconds"]) <= 240
    assert int(probe["periodSeconds"]) * int(probe["failureThreshold"]) <= 240  # Cloud Run's caps
    assert "--no-allow-unauthenticated" in deploy and "--allow-unauthenticated" not in deploy
    assert "--gpu" not in deploy
    assert "https://healer-medgemma-service" in result.stdout


def test_deploy_gpu_profile_asks_for_one_l4_without_cpu_throttling(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="gpu", IMAGE_TAG="abc123")
    assert result.returncode == 0, result.stderr
    deploy = command(calls, "run", "deploy")
    assert flag(deploy, "--gpu") == "1"
    assert flag(deploy, "--gpu-type") == "nvidia-l4"
    assert "--no-cpu-throttling" in deploy
    assert flag(deploy, "--image").endswith("/healer-medgemma-gpu:abc123")
    assert "QUANTIZATION=none" in flag(deploy, "--set-env-vars")
    assert "--no-allow-unauthenticated" in deploy


def test_deploy_can_be_made_public_explicitly(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", ALLOW_UNAUTHENTICATED="true")
    assert result.returncode == 0, result.stderr
    deploy = command(calls, "run", "deploy")
    assert "--allow-unauthenticated" in deploy and "--no-allow-unauthenticated" not in deploy


def test_deploy_min_instances_and_queue_are_configurable(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", MIN_INSTANCES="0", MAX_QUEUE="2")
    assert result.returncode == 0, result.stderr
    deploy = command(calls, "run", "deploy")
    assert flag(deploy, "--min-instances") == "0"
    assert flag(deploy, "--concurrency") == "6"


@pytest.mark.parametrize("env, message", [
    ({"PROFILE": "tpu"}, "PROFILE must be cpu or gpu, not 'tpu'"),
    ({"ALLOW_UNAUTHENTICATED": "yes"}, "ALLOW_UNAUTHENTICATED must be true or false"),
    ({"MIN_INSTANCES": "one"}, "MIN_INSTANCES must be a whole number"),
    ({"FAKE_MISSING": "image"}, "not found: build it first with PROFILE=cpu ./build.sh"),
])
def test_deploy_refuses_bad_settings_before_deploying(gcloud, env, message):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", **env)
    assert result.returncode == 1
    assert message in result.stderr
    assert not [call for call in calls if call[:2] == ["run", "deploy"]]


def test_the_scripts_keep_the_original_names_and_defaults():
    shared = (ROOT / "scripts/gcloud-preflight.sh").read_text()  # sourced by both
    for script in ("build.sh", "deploy.sh"):
        text = (ROOT / script).read_text()
        assert "set -euo pipefail" in text and "scripts/gcloud-preflight.sh" in text
        text += shared
        assert "REGION=${REGION:-europe-west1}" in text
        assert "REPOSITORY_NAME=${REPOSITORY_NAME:-healer-medgemma}" in text
    assert "SERVICE_NAME=${SERVICE_NAME:-healer-medgemma-service}" in (ROOT / "deploy.sh").read_text()
    build = (ROOT / "build.sh").read_text()
    assert "MODEL_ID=${MODEL_ID:-google/medgemma-4b-it}" in build and "MODEL_DIR=${MODEL_DIR:-" in build
    assert os.access(ROOT / "build.sh", os.X_OK) and os.access(ROOT / "deploy.sh", os.X_OK)
