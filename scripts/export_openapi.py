"""Writes the service's OpenAPI schema as JSON: `python scripts/export_openapi.py [PATH]`.

The front end generates its API types from this file (frontend/scripts/gen-api.mjs), so a change
to the HTTP contract shows up as a type error in the page. No model is loaded: the schema comes
from the routes alone. Without PATH the schema goes to stdout.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from healer.api.app import create_app  # noqa: E402  (needs the repo root on the path first)


def main() -> None:
    schema = json.dumps(create_app().openapi(), indent=2) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(schema)
    else:
        sys.stdout.write(schema)


if __name__ == "__main__":
    main()
