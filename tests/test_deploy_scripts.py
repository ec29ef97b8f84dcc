"""build.sh and deploy.sh against a fake `gcloud` that records every call.

PATH holds only the fake gcloud and the few tools the scripts use (bash, git, dirname, date, cat),
so the real gcloud on a developer's machine is never reached. The fake answers like gcloud:
`auth list` prints the active account (FAKE_ACCOUNT), `config get-value project` the project
(FAKE_PROJECT), and `describe` fails for whatever FAKE_MISSING names ("secret" or
"secret:NAME", "repo", "image", "sa", "bucket").

It also keeps the Cloud Run service between calls the way gcloud documents `run deploy`: a flag
not given keeps its earlier value; --set-env-vars / --set-secrets replace the whole list,
--update-env-vars / --update-secrets merge into it. So a test can deploy twice and read what
the service holds afterwards, as a user would with `gcloud run services describe`.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

FAKE_GCLOUD = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
missing = os.environ.get("FAKE_MISSING", "").split()

def deploy(name, flags):
    path = os.environ["FAKE_SERVICES"]
    services = json.load(open(path)) if os.path.exists(path) else {{}}
    service = services.setdefault(name, {{"env": {{}}, "secrets": {{}}, "flags": {{}}}})
    i = 0
    while i < len(flags):
        flag, value = flags[i], None
        if "=" in flag:
            flag, value = flag.split("=", 1)
        elif i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            value, i = flags[i + 1], i + 1
        i += 1
        if flag in ("--set-env-vars", "--set-secrets", "--update-env-vars", "--update-secrets"):
            pairs = dict(item.split("=", 1) for item in value.split(","))
            kind = "env" if "env" in flag else "secrets"
            if flag.startswith("--set-"):
                service[kind] = pairs
            else:
                service[kind].update(pairs)
        elif flag.startswith("--no-"):
            service["flags"][flag[5:]] = False
        else:
            service["flags"][flag[2:]] = True if value is None else value
    json.dump(services, open(path, "w"))

if args[:2] == ["auth", "list"]:
    print(os.environ.get("FAKE_ACCOUNT", ""))
elif args[:3] == ["config", "get-value", "project"]:
    print(os.environ.get("FAKE_PROJECT", ""))
elif args[:2] == ["secrets", "describe"] and ("secret" in missing or "secret:" + args[2] in missing):
    sys.exit("ERROR: NOT_FOUND: Secret not found")
elif args[:3] == ["artifacts", "repositories", "describe"] and "repo" in missing:
    sys.exit("ERROR: NOT_FOUND: Repository not found")
elif args[:4] == ["artifacts", "docker", "images", "describe"] and "image" in missing:
    sys.exit("ERROR: NOT_FOUND: Image not found")
elif args[:3] == ["iam", "service-accounts", "describe"] and "sa" in missing:
    sys.exit("ERROR: NOT_FOUND: Unknown service account")
elif args[:3] == ["storage", "buckets", "describe"] and "bucket" in missing:
    sys.exit("ERROR: NOT_FOUND: bucket not found")
elif args[:2] == ["run", "deploy"]:
    deploy(args[2], args[3:])
elif args[:3] == ["run", "services", "describe"]:
    print("https://healer-medgemma-service-abc-ew.a.run.app")
"""


@pytest.fixture
def gcloud(tmp_path):
    """Runs a script with the fake gcloud; returns (result, the gcloud calls it made)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "git", "dirname", "date", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    fake = bin_dir / "gcloud"
    fake.write_text(FAKE_GCLOUD)
    fake.chmod(0o755)
    log = tmp_path / "gcloud.log"
    services = tmp_path / "services.json"

    def run(script: str, installed: bool = True, **env: str):
        if not installed:
            fake.unlink()
        environment = {"PATH": str(bin_dir), "HOME": str(tmp_path), "FAKE_LOG": str(log),
                       "FAKE_SERVICES": str(services),
                       "FAKE_ACCOUNT": "dev@example.com", "FAKE_PROJECT": "", **env}
        result = subprocess.run([str(ROOT / script)], cwd=tmp_path, env=environment,
                                capture_output=True, text=True, timeout=30)
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        log.unlink(missing_ok=True)
        return result, calls

    def cli(*args: str) -> None:  # gcloud as a user types it, outside the scripts
        subprocess.run([str(fake), *args], env={"FAKE_LOG": os.devnull, "FAKE_SERVICES": str(services)},
                       check=True)

    run.cli = cli
    run.service = lambda name="healer-medgemma-service": json.loads(services.read_text())[name]
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


def test_build_runs_as_its_own_account_with_access_to_its_secret_repository_and_source_only(gcloud):
    result, calls = gcloud("build.sh", PROJECT_ID="p", TAG="t", FAKE_MISSING="sa")
    assert result.returncode == 0, result.stderr
    account = "healer-build@p.iam.gserviceaccount.com"
    assert command(calls, "iam", "service-accounts", "create")[3] == "healer-build"
    submit = command(calls, "builds", "submit")
    assert flag(submit, "--service-account") == f"projects/p/serviceAccounts/{account}"
    assert flag(submit, "--gcs-source-staging-dir") == "gs://p_cloudbuild/source"
    grants = {(call[0], flag(call, "add-iam-policy-binding"), flag(call, "--role"))
              for call in calls if "add-iam-policy-binding" in call}
    assert {flag(call, "--member") for call in calls if "add-iam-policy-binding" in call} == {
        f"serviceAccount:{account}"}
    assert grants == {
        ("secrets", "hf-token", "roles/secretmanager.secretAccessor"),
        ("artifacts", "healer-medgemma", "roles/artifactregistry.writer"),
        ("projects", "p", "roles/logging.logWriter"),
        ("storage", "gs://p_cloudbuild", "roles/storage.objectViewer"),
    }


def test_build_sets_a_cleanup_policy_that_keeps_the_newest_images(gcloud):
    result, calls = gcloud("build.sh", PROJECT_ID="p", TAG="t")
    assert result.returncode == 0, result.stderr
    cleanup = command(calls, "artifacts", "repositories", "set-cleanup-policies")
    assert cleanup[3] == "healer-medgemma" and "--no-dry-run" in cleanup
    policies = json.loads((ROOT / flag(cleanup, "--policy")).read_text())
    keep = next(p for p in policies if p["action"]["type"] == "Keep")
    delete = next(p for p in policies if p["action"]["type"] == "Delete")
    assert keep["mostRecentVersions"]["keepCount"] >= 2  # `latest` and the one before it, at least
    assert delete["condition"]["olderThan"].endswith("d")


def test_build_without_a_pinned_revision_warns_loudly(gcloud):
    unpinned, _ = gcloud("build.sh", PROJECT_ID="p", TAG="t")
    pinned, _ = gcloud("build.sh", PROJECT_ID="p", TAG="t", MODEL_REVISION="f00d")
    assert unpinned.returncode == 0 and pinned.returncode == 0
    assert "warning: MODEL_REVISION is not set" in unpinned.stderr
    assert "MODEL_REVISION=<commit sha> ./build.sh" in unpinned.stderr
    assert "warning" not in pinned.stderr


def test_cloudbuild_reuses_the_previous_image_as_a_layer_cache():
    [build] = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["steps"]
    script = " ".join(build["args"])
    assert "--cache-from ${_IMAGE}:latest" in script  # the image cloudbuild pushes as `latest`
    assert "--build-arg BUILDKIT_INLINE_CACHE=1" in script  # and writes the cache into it


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
    env = gcloud.service()["env"]
    assert env["QUANTIZATION"] == "int8" and env["MAX_QUEUE"] == "4"
    probe = dict(item.split("=") for item in flag(deploy, "--startup-probe").split(","))
    assert probe["httpGet.path"] == "/"
    budget = int(probe["initialDelaySeconds"]) + int(probe["periodSeconds"]) * int(probe["failureThreshold"])
    assert budget >= 180  # model load + warm-up on CPU takes minutes
    assert int(probe["initialDelaySeconds"]) <= 240
    assert int(probe["periodSeconds"]) * int(probe["failureThreshold"]) <= 240  # Cloud Run's caps
    assert "--no-allow-unauthenticated" in deploy and "--allow-unauthenticated" not in deploy
    assert "https://healer-medgemma-service" in result.stdout


def test_deploy_gpu_profile_asks_for_one_l4_without_cpu_throttling_or_zonal_redundancy(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="gpu", IMAGE_TAG="abc123")
    assert result.returncode == 0, result.stderr
    deploy = command(calls, "run", "deploy")
    assert flag(deploy, "--gpu") == "1"
    assert flag(deploy, "--gpu-type") == "nvidia-l4"
    assert "--no-cpu-throttling" in deploy
    assert "--no-gpu-zonal-redundancy" in deploy  # needs no extra quota on a new project
    assert flag(deploy, "--image").endswith("/healer-medgemma-gpu:abc123")
    assert gcloud.service()["env"]["QUANTIZATION"] == "none"
    assert "--no-allow-unauthenticated" in deploy


def test_deploy_gpu_zonal_redundancy_can_be_asked_for(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="gpu", GPU_ZONAL_REDUNDANCY="true")
    assert result.returncode == 0, result.stderr
    assert gcloud.service()["flags"]["gpu-zonal-redundancy"] is True


def test_deploy_gpu_defaults_to_no_idle_instance_and_warns_when_one_is_kept(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="gpu")
    assert result.returncode == 0, result.stderr
    assert flag(command(calls, "run", "deploy"), "--min-instances") == "0"
    assert "billed around the clock" not in result.stderr
    kept, _ = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="gpu", MIN_INSTANCES="1")
    assert kept.returncode == 0, kept.stderr
    assert "keeps 1 L4 GPU instance(s)" in kept.stderr and "billed around the clock" in kept.stderr


def test_a_cpu_deploy_after_a_gpu_deploy_removes_the_gpu(gcloud):
    assert gcloud("deploy.sh", PROJECT_ID="p", PROFILE="gpu")[0].returncode == 0
    assert gcloud.service()["flags"]["gpu"] == "1"
    result, _ = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="cpu")
    assert result.returncode == 0, result.stderr
    flags = gcloud.service()["flags"]
    assert flags["gpu"] == "0"
    assert flags["cpu-throttling"] is True  # back to request-based billing
    assert flags["memory"] == "16Gi" and flags["timeout"] == "600"


def test_the_app_gives_up_before_cloud_run_does(gcloud):
    for profile, cloud_run, app in (("cpu", "600", "590"), ("gpu", "120", "110")):
        result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE=profile, SERVICE_NAME=profile)
        assert result.returncode == 0, result.stderr
        assert flag(command(calls, "run", "deploy"), "--timeout") == cloud_run
        assert gcloud.service(profile)["env"]["REQUEST_TIMEOUT_S"] == app


def test_the_timeout_margin_must_leave_the_app_some_time(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", CLOUD_RUN_TIMEOUT="10")
    assert result.returncode == 1
    assert "CLOUD_RUN_TIMEOUT (10 s) must exceed TIMEOUT_MARGIN_S (10 s)" in result.stderr


def test_the_service_runs_as_its_own_account_with_no_project_roles(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", FAKE_MISSING="sa")
    assert result.returncode == 0, result.stderr
    assert command(calls, "iam", "service-accounts", "create")[3] == "healer-run"
    assert flag(command(calls, "run", "deploy"), "--service-account") == "healer-run@p.iam.gserviceaccount.com"
    assert not [call for call in calls if "add-iam-policy-binding" in call]  # no key secret: no grant at all


def test_an_account_of_another_project_must_exist(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", FAKE_MISSING="sa",
                           SERVICE_ACCOUNT="runner@elsewhere.iam.gserviceaccount.com")
    assert result.returncode == 1
    assert "service account runner@elsewhere.iam.gserviceaccount.com not found" in result.stderr
    assert not [call for call in calls if call[:2] == ["run", "deploy"]]


def test_the_api_key_comes_from_secret_manager_readable_by_the_service_alone(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", API_KEY_SECRET="healer-api-key")
    assert result.returncode == 0, result.stderr
    assert gcloud.service()["secrets"] == {"API_KEY": "healer-api-key:latest"}
    [grant] = [call for call in calls if "add-iam-policy-binding" in call]
    assert grant[:3] == ["secrets", "add-iam-policy-binding", "healer-api-key"]
    assert flag(grant, "--member") == "serviceAccount:healer-run@p.iam.gserviceaccount.com"
    assert flag(grant, "--role") == "roles/secretmanager.secretAccessor"


def test_a_redeploy_keeps_the_api_key_and_settings_made_by_hand(gcloud):
    assert gcloud("deploy.sh", PROJECT_ID="p", API_KEY_SECRET="healer-api-key")[0].returncode == 0
    # An operator's own change, made by hand between two deploys:
    gcloud.cli("run", "deploy", "healer-medgemma-service", "--update-env-vars", "CORS_ORIGINS=https://lab.example")
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", MAX_QUEUE="2")
    assert result.returncode == 0, result.stderr
    service = gcloud.service()
    assert service["secrets"] == {"API_KEY": "healer-api-key:latest"}
    assert service["env"]["MAX_QUEUE"] == "2"
    assert service["env"]["CORS_ORIGINS"] == "https://lab.example"


def test_the_fake_drops_unlisted_variables_on_set_env_vars_as_gcloud_does(gcloud):
    """What the redeploy test guards against: the old deploy.sh's --set-env-vars."""
    gcloud.cli("run", "deploy", "s", "--update-env-vars", "API_KEY=k,CORS_ORIGINS=https://lab.example")
    gcloud.cli("run", "deploy", "s", "--set-env-vars", "QUANTIZATION=int8")
    assert gcloud.service("s")["env"] == {"QUANTIZATION": "int8"}


def test_public_without_an_api_key_is_refused(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", ALLOW_UNAUTHENTICATED="true")
    assert result.returncode == 1
    assert "ALLOW_UNAUTHENTICATED=true needs API_KEY_SECRET" in result.stderr
    assert not [call for call in calls if call[:2] == ["run", "deploy"]]


def test_public_with_an_api_key_is_allowed(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", ALLOW_UNAUTHENTICATED="true",
                           API_KEY_SECRET="healer-api-key")
    assert result.returncode == 0, result.stderr
    deploy = command(calls, "run", "deploy")
    assert "--allow-unauthenticated" in deploy and "--no-allow-unauthenticated" not in deploy
    assert gcloud.service()["secrets"]["API_KEY"] == "healer-api-key:latest"


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
    ({"API_KEY_SECRET": "k", "FAKE_MISSING": "secret:k"}, "secret k not found in p: create it with"),
    ({"PROFILE": "gpu", "GPU_ZONAL_REDUNDANCY": "yes"}, "GPU_ZONAL_REDUNDANCY must be true or false"),
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
