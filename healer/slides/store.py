"""Where a slide job's files live: one directory per job under SLIDE_JOBS_DIR.

    <root>/<job id>/slide.<suffix>   the upload, deleted once scored
                    tiles.json       every scored tile (position, size, tissue, P(yes), answer mass)
                    overlay.png      the heatmap alone, the thumbnail's size
                    heatmap.png      the heatmap with its legend

The job id is a random 128-bit hex string: the only key to a patient's results.
"""

import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path


class JobStore:
    def __init__(self, root: Path | None):
        self._owns_root = root is None  # a temporary root is deleted with the store
        self.root = root or Path(tempfile.mkdtemp(prefix="healer-slides-"))
        self.root.mkdir(parents=True, exist_ok=True)

    def new_job(self) -> str:
        job_id = uuid.uuid4().hex
        (self.root / job_id).mkdir()
        return job_id

    def slide_path(self, job_id: str, suffix: str) -> Path:
        return self.root / job_id / f"slide{suffix}"

    def write_results(self, job_id: str, tiles: list[dict], overlay_png: bytes, heatmap_png: bytes) -> None:
        directory = self.root / job_id
        (directory / "tiles.json").write_text(json.dumps(tiles))
        (directory / "overlay.png").write_bytes(overlay_png)
        (directory / "heatmap.png").write_bytes(heatmap_png)

    def read_tiles(self, job_id: str) -> list[dict]:
        """Raises FileNotFoundError once the results are gone."""
        return json.loads((self.root / job_id / "tiles.json").read_text())

    def read_heatmap(self, job_id: str, legend: bool) -> bytes:
        """Raises FileNotFoundError once the results are gone."""
        return (self.root / job_id / ("heatmap.png" if legend else "overlay.png")).read_bytes()

    def delete(self, job_id: str) -> None:
        shutil.rmtree(self.root / job_id, ignore_errors=True)

    def remove_leftovers(self, older_than_s: float, keep: set[str]) -> None:
        """Job directories a previous process left behind, once past the TTL (their jobs died
        with that process; younger ones may belong to a sibling sharing the directory)."""
        expiry = time.time() - older_than_s
        for path in self.root.iterdir():
            if path.is_dir() and path.name not in keep and path.stat().st_mtime < expiry:
                shutil.rmtree(path, ignore_errors=True)

    def close(self) -> None:
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
