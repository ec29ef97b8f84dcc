"""What `gcloud builds submit .` uploads: never a token, a model or an environment.

gcloud reads `.gcloudignore` with .gitignore's syntax (its documentation says so, and it does not
read .gitignore at all once .gcloudignore exists), so git itself judges the file here:
`git check-ignore --no-index` in an empty repository whose only exclude file is .gcloudignore.
The paths need not exist. `.dockerignore` is judged by a small reading of Docker's rules (patterns
anchored at the context root, `**` for any depth, a match on a folder covers what is inside);
the two must agree on every file in the repository.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TOKEN_FILES = ["token.txt", "frontend/token.txt", ".env", ".env.production", "healer/.env",
               "hf.token", "hf_token", "hf_token.txt", "scripts/my.token"]
NEVER_UPLOADED = [
    ".git/config", ".git/objects/ab/cdef", ".venv/bin/python", "venv/lib/site.py",
    "medgemma-model/model-00001-of-00002.safetensors", "medgemma-model/config.json",
    "demo-model/model.safetensors", "model/config.json", "models/x/config.json",
    "bench/models/full/model.safetensors", "weights/extra.safetensors",
    "node_modules/react/index.js", "frontend/node_modules/vite/package.json", "frontend/dist/index.html",
    ".build/docker/data/x", "healer/__pycache__/settings.cpython-311.pyc", "evaluation/roc.png",
]


@pytest.fixture(scope="module")
def gcloud_ignores(tmp_path_factory):
    """A predicate: does gcloud leave this path out of the upload?"""
    repo = tmp_path_factory.mktemp("upload")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)

    def ignored(paths: list[str]) -> set[str]:
        result = subprocess.run(
            ["git", "-c", f"core.excludesFile={ROOT / '.gcloudignore'}", "check-ignore", "--no-index",
             *paths], cwd=repo, capture_output=True, text=True)
        assert result.returncode in (0, 1), result.stderr  # 1: none ignored
        return set(result.stdout.splitlines())

    return ignored


def docker_ignores(path: str) -> bool:
    """Docker's .dockerignore rules, for the pattern forms that file uses (no negation)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip().strip("/")
        if not pattern or pattern.startswith("#"):
            continue
        regex = "".join(
            "(.*/)?" if token == "**/" else ".*" if token == "**" else "[^/]*" if token == "*"
            else "[^/]" if token == "?" else re.escape(token)
            for token in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pattern)
        )
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            return True
    return False


def tracked_files() -> list[str]:
    result = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def test_no_token_file_is_uploaded_at_any_depth(gcloud_ignores):
    assert gcloud_ignores(TOKEN_FILES) == set(TOKEN_FILES)


def test_git_environments_models_and_node_modules_stay_home(gcloud_ignores):
    assert gcloud_ignores(NEVER_UPLOADED) == set(NEVER_UPLOADED)


def test_everything_the_dockerfile_copies_is_uploaded(gcloud_ignores):
    needed = [path for path in tracked_files()
              if path in ("Dockerfile", ".dockerignore", "requirements.txt", "download.py", "main.py")
              or path.startswith(("healer/", "frontend/"))]
    assert "healer/settings.py" in needed and "frontend/package.json" in needed
    assert gcloud_ignores(needed) == set()


def test_it_mirrors_dockerignore_on_every_file_of_the_repository(gcloud_ignores):
    files = tracked_files() + TOKEN_FILES + NEVER_UPLOADED
    gcloud = gcloud_ignores(files)
    disagreements = {path: ("gcloud uploads it, docker leaves it out" if docker_ignores(path)
                            else "docker takes it, gcloud leaves it out")
                     for path in files if (path in gcloud) != docker_ignores(path)}
    assert disagreements == {}


def test_gitignore_keeps_token_files_out_of_git():
    result = subprocess.run(["git", "check-ignore", "--no-index", *TOKEN_FILES], cwd=ROOT,
                            capture_output=True, text=True)
    assert set(result.stdout.splitlines()) == set(TOKEN_FILES)
