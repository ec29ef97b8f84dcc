"""build.sh and deploy.sh against a fake `gcloud` that records every call.

PATH holds only the fake gcloud and the few tools the scripts use (bash, git, dirname, date, cat,
mktemp, rm), so the real gcloud on a developer's machine is never reached. The fake answers like
gcloud: `auth list` prints the active account (FAKE_ACCOUNT), `config get-value project` the
project (FAKE_PROJECT), and `describe` fails for whatever FAKE_MISSING names ("secret" or
"secret:NAME", "repo", "image", "sa", "bucket"). A file passed with --lifecycle-file or
--cors-file is read when the call is made (the script deletes it afterwards) and kept as JSON.

It also keeps the Cloud Run service, and the Cloud Run Job, between calls the way gcloud
documents `run deploy` and `run jobs deploy`: a flag not given keeps its earlier value;
--set-env-vars / --set-secrets replace the whole list, --update-env-vars / --update-secrets
merge into it. So a test can deploy twice and read what the service holds afterwards, as a
user would with `gcloud run services describe`.
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
    target = service  # flags after `--container NAME` are that container's
    i = 0
    while i < len(flags):
        flag, value = flags[i], None
        if "=" in flag:
            flag, value = flag.split("=", 1)
        elif i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            value, i = flags[i + 1], i + 1
        i += 1
        if flag == "--container":
            containers = service.setdefault("containers", {{}})
            target = containers.setdefault(value, {{"env": {{}}, "secrets": {{}}, "flags": {{}}}})
        elif flag in ("--set-env-vars", "--set-secrets", "--update-env-vars", "--update-secrets"):
            pairs = dict(item.split("=", 1) for item in value.split(","))
            kind = "env" if "env" in flag else "secrets"
            if flag.startswith("--set-"):
                target[kind] = pairs
            else:
                target[kind].update(pairs)
        elif flag.startswith("--no-"):
            target["flags"][flag[5:]] = False
        elif flag == "--add-volume":  # repeatable: kept by name
            volume = dict(item.split("=", 1) for item in value.split(","))
            target.setdefault("volumes", {{}})[volume.pop("name")] = volume
        else:
            target["flags"][flag[2:]] = True if value is None else value
    json.dump(services, open(path, "w"))

for arg in args:  # the script deletes these files when it ends: keep what gcloud would have read
    name, _, path = arg.partition("=")
    if name in ("--lifecycle-file", "--cors-file"):
        files_path = os.environ["FAKE_FILES"]
        files = json.load(open(files_path)) if os.path.exists(files_path) else {{}}
        files[name[2:]] = json.load(open(path))
        json.dump(files, open(files_path, "w"))

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
elif args[:3] == ["run", "jobs", "deploy"]:
    deploy(args[3], args[4:])
elif args[:3] == ["run", "services", "describe"]:
    print("https://healer-medgemma-service-abc-ew.a.run.app")
"""


@pytest.fixture
def gcloud(tmp_path):
    """Runs a script with the fake gcloud; returns (result, the gcloud calls it made)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "git", "dirname", "date", "cat", "mktemp", "rm"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    fake = bin_dir / "gcloud"
    fake.write_text(FAKE_GCLOUD)
    fake.chmod(0o755)
    log = tmp_path / "gcloud.log"
    services = tmp_path / "services.json"
    files = tmp_path / "files.json"

    def run(script: str, installed: bool = True, **env: str):
        if not installed:
            fake.unlink()
        environment = {"PATH": str(bin_dir), "HOME": str(tmp_path), "FAKE_LOG": str(log),
                       "FAKE_SERVICES": str(services), "FAKE_FILES": str(files),
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
    run.job = lambda name="healer-medgemma-service-slides": json.loads(services.read_text())[name]
    run.file = lambda name: json.loads(files.read_text())[name]  # "lifecycle-file" or "cors-file"
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


def test_the_service_and_the_slide_job_run_as_their_own_accounts_with_no_project_roles(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", FAKE_MISSING="sa")
    assert result.returncode == 0, result.stderr
    created = [call[3] for call in calls if call[:3] == ["iam", "service-accounts", "create"]]
    assert sorted(created) == ["healer-run", "healer-slides"]
    assert flag(command(calls, "run", "deploy"), "--service-account") == "healer-run@p.iam.gserviceaccount.com"
    assert flag(command(calls, "run", "jobs", "deploy"), "--service-account") == (
        "healer-slides@p.iam.gserviceaccount.com")
    grants = [call for call in calls if "add-iam-policy-binding" in call]
    # No key secret: the only grants are on the slide bucket and the slide job, none on the project.
    assert {tuple(call[:3]) for call in grants} == {
        ("storage", "buckets", "add-iam-policy-binding"), ("run", "jobs", "add-iam-policy-binding")}


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
    [grant] = [call for call in calls if call[:2] == ["secrets", "add-iam-policy-binding"]]
    assert grant[2] == "healer-api-key"
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
    ({"PROFILE": "tpu"}, "PROFILE must be cpu, gpu, vllm or remote, not 'tpu'"),
    ({"ALLOW_UNAUTHENTICATED": "yes"}, "ALLOW_UNAUTHENTICATED must be true or false"),
    ({"MIN_INSTANCES": "one"}, "MIN_INSTANCES must be a whole number"),
    ({"FAKE_MISSING": "image"}, "not found: build it first with PROFILE=cpu ./build.sh"),
    ({"API_KEY_SECRET": "k", "FAKE_MISSING": "secret:k"}, "secret k not found in p: create it with"),
    ({"PROFILE": "gpu", "GPU_ZONAL_REDUNDANCY": "yes"}, "GPU_ZONAL_REDUNDANCY must be true or false"),
    ({"SLIDE_RESULT_DAYS": "0"}, "SLIDE_RESULT_DAYS must be a whole number of days, at least 1"),
    ({"SLIDE_RESULT_DAYS": "12h"}, "SLIDE_RESULT_DAYS must be a whole number of days"),
    ({"SLIDE_BUCKET": "gs://My_Slides"}, "SLIDE_BUCKET must be a bucket name"),
    ({"SLIDE_TASK_TIMEOUT": "1h"}, "SLIDE_TASK_TIMEOUT (seconds) and SLIDE_MAX_RETRIES must be whole numbers"),
    ({"PAGE_ORIGIN": "https://lab.example/app"}, "PAGE_ORIGIN must list origins like https://lab.example"),
])
def test_deploy_refuses_bad_settings_before_deploying(gcloud, env, message):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", **env)
    assert result.returncode == 1
    assert message in result.stderr
    changes = {"deploy", "create", "update", "add-iam-policy-binding"}
    assert not [call for call in calls if changes & set(call)]  # nothing made, nothing changed


# --- deploy.sh: slides at scale -----------------------------------------------------------------

def calls_to(calls: list[list[str]], *prefix: str) -> list[list[str]]:
    return [call for call in calls if call[: len(prefix)] == list(prefix)]


def test_deploy_creates_a_private_slide_bucket_in_the_region_when_there_is_none(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", FAKE_MISSING="bucket")
    assert result.returncode == 0, result.stderr
    create = command(calls, "storage", "buckets", "create")
    assert create[3] == "gs://p-healer-slides"
    assert flag(create, "--location") == "europe-west1" and flag(create, "--project") == "p"
    assert "--uniform-bucket-level-access" in create and "--public-access-prevention" in create
    # A deleted slide is gone at once, not kept (and billed) by soft delete for a week.
    [soft] = [call for call in calls_to(calls, "storage", "buckets", "update") if "--clear-soft-delete" in call]
    assert soft[3] == "gs://p-healer-slides"
    assert gcloud.service()["env"]["SLIDE_STORE"] == "gs://p-healer-slides/slides"


def test_deploy_reuses_an_existing_bucket_and_takes_slide_bucket(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", SLIDE_BUCKET="gs://lab-slides/")
    assert result.returncode == 0, result.stderr
    assert command(calls, "storage", "buckets", "describe")[3] == "gs://lab-slides"
    assert not calls_to(calls, "storage", "buckets", "create")
    assert not [call for call in calls if "--clear-soft-delete" in call]  # an existing bucket keeps its settings
    assert {call[3] for call in calls_to(calls, "storage", "buckets")} == {"gs://lab-slides"}
    assert gcloud.service()["env"]["SLIDE_STORE"] == "gs://lab-slides/slides"
    assert gcloud.job()["env"]["SLIDE_STORE"] == "gs://lab-slides/slides"


@pytest.mark.parametrize("env, days", [({}, 1), ({"SLIDE_RESULT_DAYS": "3"}, 3)])
def test_slide_objects_are_deleted_after_slide_result_days_and_nothing_else_is(gcloud, env, days):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", **env)
    assert result.returncode == 0, result.stderr
    [update] = [call for call in calls_to(calls, "storage", "buckets", "update")
                if any(arg.startswith("--lifecycle-file=") for arg in call)]
    assert update[3] == "gs://p-healer-slides"
    assert gcloud.file("lifecycle-file") == {"lifecycle": {"rule": [
        {"action": {"type": "Delete"}, "condition": {"age": days, "matchesPrefix": ["slides/"]}}]}}


def test_the_bucket_lets_the_page_served_by_the_service_upload_and_resume(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p")
    assert result.returncode == 0, result.stderr
    [update] = [call for call in calls_to(calls, "storage", "buckets", "update")
                if any(arg.startswith("--cors-file=") for arg in call)]
    assert update[3] == "gs://p-healer-slides"
    [rule] = gcloud.file("cors-file")
    assert rule["origin"] == ["https://healer-medgemma-service-abc-ew.a.run.app"]  # the page is at /app
    assert set(rule["method"]) == {"PUT", "POST", "GET", "DELETE", "OPTIONS"}
    assert {"Content-Type", "Content-Range", "Range", "Location"} <= set(rule["responseHeader"])
    assert rule["maxAgeSeconds"] == 3600
    # The URL is known once the service is deployed: CORS comes after.
    assert calls.index(update) > calls.index(command(calls, "run", "deploy"))


def test_page_origin_names_where_else_the_page_is_served(gcloud):
    result, _ = gcloud("deploy.sh", PROJECT_ID="p", PAGE_ORIGIN="https://lab.example/,http://localhost:5173")
    assert result.returncode == 0, result.stderr
    assert gcloud.file("cors-file")[0]["origin"] == ["https://lab.example", "http://localhost:5173"]


@pytest.mark.parametrize("profile, image, memory, gpu, timeout", [
    ("cpu", "healer-medgemma", "16Gi", "0", "10800s"),
    ("gpu", "healer-medgemma-gpu", "32Gi", "1", "3600s"),
])
def test_the_slide_job_runs_the_worker_from_the_same_image_and_profile(gcloud, profile, image, memory, gpu, timeout):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE=profile, IMAGE_TAG="t1")
    assert result.returncode == 0, result.stderr
    deploy = command(calls, "run", "jobs", "deploy")
    assert deploy[3] == "healer-medgemma-service-slides"
    assert flag(deploy, "--image") == flag(command(calls, "run", "deploy"), "--image")
    assert flag(deploy, "--image").endswith(f"/{image}:t1")
    assert flag(deploy, "--region") == "europe-west1" and flag(deploy, "--project") == "p"
    # `--args=-m,...` in one word: gcloud would read a separate `-m,...` as a flag of its own.
    assert flag(deploy, "--command") == "python" and "--args=-m,healer.slides.worker" in deploy
    assert flag(deploy, "--max-retries") == "3" and flag(deploy, "--task-timeout") == timeout
    job = gcloud.job()
    assert job["flags"]["memory"] == memory and job["flags"]["cpu"] == "8" and job["flags"]["gpu"] == gpu
    if profile == "gpu":
        assert job["flags"]["gpu-type"] == "nvidia-l4" and job["flags"]["gpu-zonal-redundancy"] is False
    assert job["env"]["QUANTIZATION"] == gcloud.service()["env"]["QUANTIZATION"]
    assert job["env"]["SLIDE_STORE"] == "gs://p-healer-slides/slides"


def test_the_service_and_the_job_read_slides_through_a_read_only_mount_of_the_bucket(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p")
    assert result.returncode == 0, result.stderr
    for deploy, resource in ((command(calls, "run", "deploy"), gcloud.service()),
                             (command(calls, "run", "jobs", "deploy"), gcloud.job())):
        assert flag(deploy, "--add-volume") == "name=slide-bucket,type=cloud-storage,bucket=p-healer-slides,readonly=true"
        assert flag(deploy, "--add-volume-mount") == "volume=slide-bucket,mount-path=/mnt/slide-bucket"
        assert resource["env"]["SLIDE_STORE_MOUNT"] == "/mnt/slide-bucket"


def test_a_cpu_deploy_after_a_gpu_deploy_removes_the_gpu_from_the_job_too(gcloud):
    assert gcloud("deploy.sh", PROJECT_ID="p", PROFILE="gpu")[0].returncode == 0
    assert gcloud("deploy.sh", PROJECT_ID="p", PROFILE="cpu")[0].returncode == 0
    assert gcloud.job()["flags"]["gpu"] == "0" and gcloud.job()["flags"]["memory"] == "16Gi"


def test_the_job_scores_with_the_services_model_settings(gcloud):
    result, _ = gcloud("deploy.sh", PROJECT_ID="p", ADAPTER_DIR="/app/adapter", SLIDE_THRESHOLD="0.7")
    assert result.returncode == 0, result.stderr
    for resource in (gcloud.service(), gcloud.job()):
        assert resource["env"]["ADAPTER_DIR"] == "/app/adapter"
        assert resource["env"]["SLIDE_THRESHOLD"] == "0.7"
    assert "MODEL_DIR" not in gcloud.job()["env"]  # unset here: the image's own MODEL_DIR


def test_the_service_scores_slides_on_the_job_through_the_bucket(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", REGION="us-central1", SERVICE_NAME="screening")
    assert result.returncode == 0, result.stderr
    env = gcloud.service("screening")["env"]
    assert env["SLIDE_STORE"] == "gs://p-healer-slides/slides"
    assert env["SLIDE_RUNNER"] == "cloud-run-job"
    assert env["SLIDE_CLOUD_RUN_JOB"] == "projects/p/locations/us-central1/jobs/screening-slides"
    assert command(calls, "run", "jobs", "deploy")[3] == "screening-slides"
    # Bucket and job exist, and the service may use them, before the service starts using them.
    order = [calls.index(command(calls, *prefix)) for prefix in (
        ("storage", "buckets", "describe"), ("run", "jobs", "deploy"), ("run", "deploy"))]
    assert order == sorted(order)
    assert all(calls.index(grant) < order[-1] for grant in calls if "add-iam-policy-binding" in grant)


def test_each_account_gets_only_what_it_uses_on_the_bucket_and_the_job(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", SLIDE_JOB_ACCOUNT="scorer@p.iam.gserviceaccount.com")
    assert result.returncode == 0, result.stderr
    service, job = "serviceAccount:healer-run@p.iam.gserviceaccount.com", "serviceAccount:scorer@p.iam.gserviceaccount.com"
    bucket_grants = {(call[3], flag(call, "--member"), flag(call, "--role"))
                     for call in calls_to(calls, "storage", "buckets", "add-iam-policy-binding")}
    assert bucket_grants == {("gs://p-healer-slides", service, "roles/storage.objectUser"),
                             ("gs://p-healer-slides", job, "roles/storage.objectUser")}
    job_grants = {(call[3], flag(call, "--region"), flag(call, "--member"), flag(call, "--role"))
                  for call in calls_to(calls, "run", "jobs", "add-iam-policy-binding")}
    assert job_grants == {
        # run with overrides (task count, args) and cancel; read executions (not in the executor role).
        ("healer-medgemma-service-slides", "europe-west1", service, "roles/run.jobsExecutorWithOverrides"),
        ("healer-medgemma-service-slides", "europe-west1", service, "roles/run.viewer"),
    }
    assert not calls_to(calls, "projects", "add-iam-policy-binding")
    assert not calls_to(calls, "iam", "service-accounts", "add-iam-policy-binding")  # no actAs needed to run it


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


# --- ENGINE=vllm: vLLM's container beside Healer, or an endpoint elsewhere ----------------------

def test_the_vllm_profile_runs_healer_beside_vllms_official_container_which_holds_the_gpu(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="vllm")
    assert result.returncode == 0, result.stderr
    deploy = command(calls, "run", "deploy")
    assert deploy[2] == "healer-medgemma-vllm"  # its own service: two containers, not the default's one
    service = gcloud.service("healer-medgemma-vllm")
    assert service["flags"]["gpu-type"] == "nvidia-l4" and service["flags"]["cpu-throttling"] is False
    assert service["flags"]["gpu-zonal-redundancy"] is False and service["flags"]["min-instances"] == "0"
    healer, vllm = service["containers"]["healer"], service["containers"]["vllm"]
    # Healer takes the requests (the only port), starts after vLLM is ready, and asks it on localhost.
    assert healer["flags"]["port"] == "8080" and "port" not in vllm["flags"]
    assert healer["flags"]["depends-on"] == "vllm"
    assert healer["flags"]["image"].endswith("/healer-medgemma:latest")  # the CPU image: no weights loaded
    assert (healer["flags"]["cpu"], healer["flags"]["memory"]) == ("2", "4Gi")
    assert healer["env"]["ENGINE"] == "vllm" and healer["env"]["ENGINE_URL"] == "http://localhost:8000/v1"
    assert "gpu" not in healer["flags"] and vllm["flags"]["gpu"] == "1"  # one container may hold the L4
    assert vllm["flags"]["image"] == "docker.io/vllm/vllm-openai:v0.32.0"  # pinned: the version CI tests
    assert vllm["flags"]["command"] == "vllm"
    args = vllm["flags"]["args"].split(",")
    assert args[:2] == ["serve", "google/medgemma-4b-it"]
    assert "--port=8000" in args and "--max-logprobs=20" in args  # as deep as Healer reads (ENGINE_TOP_LOGPROBS)
    probe = dict(item.split("=") for item in vllm["flags"]["startup-probe"].split(","))
    assert (probe["httpGet.path"], probe["httpGet.port"]) == ("/health", "8000")
    # Weights from the Hub with build.sh's token, which the service alone may read.
    assert vllm["secrets"] == {"HF_TOKEN": "hf-token:latest"}
    [grant] = [c for c in calls if c[:3] == ["secrets", "add-iam-policy-binding", "hf-token"]]
    assert flag(grant, "--member") == "serviceAccount:healer-run@p.iam.gserviceaccount.com"
    # No Cloud Run Job can reach a sidecar: the service scores slides itself, over vLLM's batching.
    assert healer["env"]["SLIDE_RUNNER"] == "local" and "SLIDE_CLOUD_RUN_JOB" not in healer["env"]
    assert not calls_to(calls, "run", "jobs", "deploy")
    assert healer["flags"]["add-volume-mount"] == "volume=slide-bucket,mount-path=/mnt/slide-bucket"


def test_the_vllm_profile_reads_the_weights_from_a_bucket_copy_when_given_one(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="vllm", MODEL_BUCKET="gs://lab-models/medgemma-4b-it/")
    assert result.returncode == 0, result.stderr
    service = gcloud.service("healer-medgemma-vllm")
    vllm = service["containers"]["vllm"]
    assert service["volumes"]["model"] == {"type": "cloud-storage", "bucket": "lab-models", "readonly": "true"}
    assert vllm["flags"]["add-volume-mount"] == "volume=model,mount-path=/mnt/model"
    assert vllm["flags"]["args"].split(",")[:2] == ["serve", "/mnt/model/medgemma-4b-it"]
    assert "--served-model-name=google/medgemma-4b-it" in vllm["flags"]["args"]
    assert vllm["secrets"] == {}  # no token needed
    [grant] = calls_to(calls, "storage", "buckets", "add-iam-policy-binding", "gs://lab-models")
    assert flag(grant, "--role") == "roles/storage.objectViewer"  # read, never write, the weights


def test_the_vllm_profile_pins_the_models_revision_when_given_one(gcloud):
    result, _ = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="vllm", MODEL_REVISION="a1b2c3")
    assert result.returncode == 0, result.stderr
    args = gcloud.service("healer-medgemma-vllm")["containers"]["vllm"]["flags"]["args"].split(",")
    assert args[:3] == ["serve", "google/medgemma-4b-it", "--revision=a1b2c3"]


def test_the_remote_profile_answers_from_a_given_endpoint_with_its_key_from_secret_manager(gcloud):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="remote", ENGINE_URL="https://medgemma.example/v1",
                           ENGINE_API_KEY_SECRET="engine-key")
    assert result.returncode == 0, result.stderr
    service, job = gcloud.service(), gcloud.job()
    assert "containers" not in service and service["flags"]["gpu"] == "0"
    assert (service["flags"]["cpu"], service["flags"]["memory"]) == ("2", "4Gi")
    for target in (service, job):  # the slide job reaches the same endpoint with the same key
        assert target["env"]["ENGINE"] == "vllm" and target["env"]["ENGINE_URL"] == "https://medgemma.example/v1"
        assert target["secrets"]["ENGINE_API_KEY"] == "engine-key:latest"
    grants = {flag(c, "--member") for c in calls if c[:3] == ["secrets", "add-iam-policy-binding", "engine-key"]}
    assert grants == {"serviceAccount:healer-run@p.iam.gserviceaccount.com",
                      "serviceAccount:healer-slides@p.iam.gserviceaccount.com"}


@pytest.mark.parametrize("env, message", [
    ({"PROFILE": "remote"}, "PROFILE=remote needs ENGINE_URL="),
    ({"PROFILE": "remote", "ENGINE_URL": "medgemma.example"}, "ENGINE_URL must be an http(s) URL"),
    ({"PROFILE": "cpu", "ENGINE_API_KEY_SECRET": "k"}, "ENGINE_API_KEY_SECRET is for PROFILE=remote"),
    ({"PROFILE": "vllm", "MODEL_BUCKET": "Bad Bucket"}, "MODEL_BUCKET must be bucket/path"),
])
def test_engine_settings_are_checked_before_anything_is_deployed(gcloud, env, message):
    result, calls = gcloud("deploy.sh", PROJECT_ID="p", **env)
    assert result.returncode == 1 and message in result.stderr
    assert not calls_to(calls, "run", "deploy")


def test_a_cpu_deploy_after_a_remote_one_computes_in_the_service_again(gcloud):
    assert gcloud("deploy.sh", PROJECT_ID="p", PROFILE="remote", ENGINE_URL="https://e.example/v1")[0].returncode == 0
    result, _ = gcloud("deploy.sh", PROJECT_ID="p", PROFILE="cpu")
    assert result.returncode == 0, result.stderr
    assert gcloud.service()["env"]["ENGINE"] == "transformers"
    assert gcloud.job()["env"]["ENGINE"] == "transformers"
