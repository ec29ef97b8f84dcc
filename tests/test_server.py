"""The README's promise, end to end: a real server process answers `curl -F image_file=@tile.png`."""

import signal

import httpx

from healer.tools.live_server import live_server


def test_a_real_server_answers_a_multipart_upload_like_curl(demo_model_dir, he_tile_path):
    with live_server({"MODEL_DIR": str(demo_model_dir), "QUANTIZATION": "int8"}) as (url, process):
        health = httpx.get(url + "/").json()
        assert health["model"]["quantization"] == "int8" and health["model"]["demo"] is True
        with open(he_tile_path, "rb") as tile:
            response = httpx.post(url + "/predict", files={"image_file": ("tile.png", tile)}, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["answer"] in ("yes", "no", "uncertain") and 0 <= body["probability"] <= 1
        assert "not a diagnosis" in body["disclaimer"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0  # Cloud Run's SIGTERM: a clean exit
        log = process.log_path.read_text()
    assert "DEMO MODEL" in log and "warm-up answered" in log


def test_make_run_falls_back_loudly_to_the_demo_model(tmp_path):
    env = {"MODEL_DIR": str(tmp_path / "no-model-here"), "DEMO_MODEL_DIR": str(tmp_path / "demo")}
    with live_server(env, command=["scripts/serve.sh"], timeout_s=300) as (url, process):
        assert httpx.get(url + "/").json()["model"]["demo"] is True
    log = process.log_path.read_text()
    assert "serving the DEMO MODEL" in log and "MEANINGLESS" in log
    assert (tmp_path / "demo" / "config.json").is_file()
