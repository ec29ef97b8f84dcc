"""Put a servable model into MODEL_DIR.

    HF_TOKEN=hf_... python download.py     MedGemma from the Hugging Face Hub (build time)
    python download.py --demo              the tiny random-weight demo model, offline, ~1 s

Settings come from the environment: MODEL_ID, MODEL_REVISION, MODEL_DIR (see README); the token
from HF_TOKEN (or MY_HF_TOKEN, the original name), HF_ENDPOINT to use another Hub. The token is
never written to disk. Expected failures (no token, licence not accepted, no such repo, no
network, disk full) exit with status 1 and one line on stderr.
"""

import argparse
import os
import sys

from healer.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="write the tiny random-weight demo model")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.demo:
        from healer.model.demo import write_demo_model

        path = write_demo_model(settings.model_dir)
        print(f"Wrote the demo model (random weights, meaningless answers) to {path}")
        return 0
    from healer.model.hub import DownloadError, download_model

    token = os.environ.get("HF_TOKEN") or os.environ.get("MY_HF_TOKEN") or None
    try:
        path, downloaded = download_model(
            settings.model_id, settings.model_revision, settings.model_dir, token
        )
    except DownloadError as error:
        print(f"download.py: error: {error}", file=sys.stderr)
        return 1
    if downloaded:
        print(f"Downloaded {settings.model_id} to {path}")
    else:
        print(f"{path} already holds {settings.model_id}; nothing downloaded (delete it to fetch again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
