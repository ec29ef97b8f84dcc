"""The slide store's contract, on a local directory and on Cloud Storage (fake-gcs-server through
the real google-cloud-storage client): what every instance and worker task relies on."""

import threading

import httpx
import pytest

from healer.errors import DirectUploadUnavailable
from healer.slides.store import LocalStore
from healer.slides.stores import open_store


@pytest.fixture(params=["local", "gcs"])
def store(request, tmp_path):
    if request.param == "local":
        opened = open_store(str(tmp_path / "store"))
    else:
        opened = open_store(request.getfixturevalue("gcs_store_url"))
    yield opened
    opened.close()


def test_objects_are_written_read_listed_and_deleted_by_job(store):
    store.write("a" * 32 + "/state.json", b'{"status": "queued"}')
    store.write_json("a" * 32 + "/shards/00000-of-00002.json", {"complete": False})
    store.write("b" * 32 + "/slide.svs", b"slide")
    assert store.read_json("a" * 32 + "/state.json") == {"status": "queued"}
    assert store.keys("a" * 32 + "/shards/") == ["a" * 32 + "/shards/00000-of-00002.json"]
    assert set(store.job_ids()) == {"a" * 32, "b" * 32}
    assert store.size("b" * 32 + "/slide.svs") == 5 and store.size("b" * 32 + "/nothing") is None
    store.delete_job("a" * 32)
    assert set(store.job_ids()) == {"b" * 32}
    with pytest.raises(FileNotFoundError):
        store.read("a" * 32 + "/state.json")
    store.delete("b" * 32 + "/slide.svs")
    store.delete("b" * 32 + "/slide.svs")  # already gone: no error
    assert store.size("b" * 32 + "/slide.svs") is None


def test_compare_and_swap_loses_no_update_under_contention(store):
    """Eight writers add one each, twenty times, at once: every increment lands."""
    name = "c" * 32 + "/state.json"

    def add_one(now):
        return {"count": (now or {"count": 0})["count"] + 1}

    def writer():
        for _ in range(20):
            store.update(name, add_one)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.read_json(name) == {"count": 160}


def test_a_change_that_returns_none_writes_nothing(store):
    name = "d" * 32 + "/state.json"
    assert store.update(name, lambda now: None) is None
    assert store.size(name) is None


def test_an_upload_that_fails_midway_leaves_no_object(store):
    name = "e" * 32 + "/slide.svs"
    with pytest.raises(RuntimeError), store.writer(name) as file:
        file.write(b"x" * (9 * 1024 * 1024))  # past one streamed chunk
        raise RuntimeError("client went away")
    assert store.size(name) is None
    with store.writer(name) as file:
        file.write(b"y" * (9 * 1024 * 1024))
    assert store.size(name) == 9 * 1024 * 1024


def test_a_slide_is_readable_as_a_local_file(store):
    name = "f" * 32 + "/slide.tiff"
    store.write(name, b"tiff bytes")
    with store.local_file(name) as path:
        assert path.read_bytes() == b"tiff bytes" and path.suffix == ".tiff"
    with pytest.raises(FileNotFoundError), store.local_file("f" * 32 + "/missing.svs"):
        pass


def test_a_local_store_offers_no_direct_upload(tmp_path):
    with pytest.raises(DirectUploadUnavailable):
        LocalStore(tmp_path).upload_session("g" * 32 + "/slide.svs", 10, None)


def test_a_cloud_storage_upload_session_takes_chunks_from_any_http_client(gcs_store_url):
    """What the page and curl do: PUT chunks to the session URI, 308 until the last one."""
    store = open_store(gcs_store_url)
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes: four 256 KiB chunks and a last one
    url = store.upload_session("h" * 32 + "/slide.svs", len(data), "http://page.example")
    chunk = 256 * 1024
    for first in range(0, len(data), chunk):
        last = min(first + chunk, len(data)) - 1
        answer = httpx.put(url, content=data[first:last + 1],
                           headers={"Content-Range": f"bytes {first}-{last}/{len(data)}"})
        assert answer.status_code == (308 if last + 1 < len(data) else 200), answer.text
    assert store.size("h" * 32 + "/slide.svs") == len(data)
    with store.local_file("h" * 32 + "/slide.svs") as path:
        assert path.read_bytes() == data
    store.close()


def test_a_gs_uri_outside_the_store_is_read_by_its_own_bucket_and_name(gcs_store_url):
    store = open_store(gcs_store_url)
    store.write("i" * 32 + "/slide.svs", b"elsewhere")
    uri = f"{gcs_store_url}/{'i' * 32}/slide.svs"
    assert store.size(uri) == 9
    with store.local_file(uri) as path:
        assert path.read_bytes() == b"elsewhere"
    assert store.size("gs://healer-test/no/such/object.svs") is None
    store.close()


def test_with_the_bucket_mounted_a_slide_is_read_through_the_mount_not_downloaded(gcs_store_url, tmp_path):
    """deploy.sh mounts the bucket read-only (Cloud Storage FUSE); OpenSlide reads ranges from it."""
    from healer.slides.gcs import split_uri

    bucket, prefix = split_uri(gcs_store_url)
    mounted = tmp_path / "mnt" / prefix / ("j" * 32) / "slide.svs"
    mounted.parent.mkdir(parents=True)
    mounted.write_bytes(b"through the mount")
    store = open_store(gcs_store_url, mount=tmp_path / "mnt")
    with store.local_file("j" * 32 + "/slide.svs") as path:
        assert path == mounted
    store.close()
