"""Put a servable model into MODEL_DIR.

    HF_TOKEN=hf_... python download.py     MedGemma from the Hugging Face Hub (build time)
    python download.py --demo              the tiny random-weight demo model, offline, ~10 s
                                           (the first time ~35 s: Gemma 3's tokenizer is extracted once)

Settings come from the environment: MODEL_ID, MODEL_REVISION, MODEL_DIR (see README); the token
from HF_TOKEN (or MY_HF_TOKEN, the original name), HF_ENDPOINT to use another Hub. The token is
never written to disk. Expected failures (no token, licence not accepted, no such repo, no
network, disk full, a file whose size or hash is not the Hub's) exit with status 1 and one line
on stderr. Without MODEL_REVISION it takes the model's latest commit, warns, and records which
(healer-model.json, GET /).

The three settings are read here, with the service's defaults (healer/settings.py; a test keeps
them equal), rather than through `Settings`: the Dockerfile's weights stage then copies only the
files that download, and editing a setting does not fetch 8.6 GB again.
"""

import argparse
import os
import sys
from pathlib import Path

DEFAULT_MODEL_ID = "google/medgemma-4b-it"
DEFAULT_MODEL_DIR = "medgemma-model"


def model_settings() -> tuple[str, str | None, Path]:
    """MODEL_ID, MODEL_REVISION (None: the latest commit) and MODEL_DIR, as the service reads them."""
    env = os.environ
    return (env.get("MODEL_ID") or DEFAULT_MODEL_ID, env.get("MODEL_REVISION") or None,
            Path(env.get("MODEL_DIR") or DEFAULT_MODEL_DIR))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="write the tiny random-weight demo model")
    args = parser.parse_args(argv)
    model_id, revision, model_dir = model_settings()
    if args.demo:
        from healer.model.demo import write_demo_model

        path = write_demo_model(model_dir)
        print(f"Wrote the demo model (random weights, meaningless answers) to {path}")
        return 0
    from healer.model.hub import DownloadError, download_model
    from healer.model.model_dir import read_source

    token = os.environ.get("HF_TOKEN") or os.environ.get("MY_HF_TOKEN") or None
    try:
        path, downloaded = download_model(model_id, revision, model_dir, token)
    except DownloadError as error:
        print(f"download.py: error: {error}", file=sys.stderr)
        return 1
    commit = read_source(path, model_id, revision).revision
    if downloaded:
        print(f"Downloaded {model_id} at commit {commit} to {path}")
    else:
        print(f"{path} already holds {model_id} at commit {commit}; nothing downloaded (delete it to fetch again)")
    if revision is None:
        print(f"download.py: warning: MODEL_REVISION is not set, so this is whatever {model_id} held "
              f"at download time (commit {commit}, recorded in {path}/healer-model.json); "
              f"for a reproducible image set MODEL_REVISION={commit}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
