"""What people really upload: broken files get a clear 4xx, awkward-but-valid images an answer."""

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from healer.screening.images import decode_image
from healer.api.app import create_app
from tests.conftest import demo_settings, png_bytes
from tests.test_predict import assert_agrees, predict


def encode(image: Image.Image, format: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def tile(he_tile) -> Image.Image:
    return he_tile.crop((0, 0, 300, 200))


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif)


def sixteen_bit_png(image: Image.Image) -> bytes:
    import numpy as np

    grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
    return png_bytes(Image.fromarray(grey))


def animated_gif(image: Image.Image) -> bytes:
    frames = [image.convert("P"), image.rotate(90).convert("P")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


AWKWARD = {
    "rgba_png": lambda t: png_bytes(t.convert("RGBA")),
    "grayscale_png": lambda t: png_bytes(t.convert("L")),
    "palette_png": lambda t: png_bytes(t.convert("P")),
    "palette_with_transparency": lambda t: png_bytes(t.convert("P"), transparency=0),
    "cmyk_jpeg": lambda t: encode(t.convert("CMYK"), "JPEG"),
    "sixteen_bit_png": sixteen_bit_png,
    "tiff": lambda t: encode(t, "TIFF", compression="tiff_lzw"),
    "animated_gif": animated_gif,
    "exif_rotated_jpeg": lambda t: jpeg_with_orientation(t, 6),
    "bmp": lambda t: encode(t, "BMP"),
    "webp": lambda t: encode(t, "WEBP"),
    "tiny_1x1": lambda t: png_bytes(t.resize((1, 1))),
    "very_wide": lambda t: png_bytes(t.resize((4000, 3))),
    "very_tall": lambda t: png_bytes(t.resize((2, 3000))),
}


@pytest.mark.parametrize("kind", AWKWARD)
def test_awkward_but_valid_images_are_answered(client, tile, kind):
    response = predict(client, AWKWARD[kind](tile), name=f"{kind}.img", content_type="application/octet-stream")
    assert response.status_code == 200, response.text
    assert_agrees(response.json())


def test_exif_orientation_is_applied(tile):
    upright = decode_image(jpeg_with_orientation(tile, 6), max_pixels=10**8)
    assert upright.size == (tile.height, tile.width)  # rotated 90°: 300×200 becomes 200×300


def test_sixteen_bit_images_are_rescaled_not_clipped(tile):
    decoded = decode_image(sixteen_bit_png(tile), max_pixels=10**8)
    expected = tile.convert("L")
    assert decoded.mode == "RGB"
    assert abs(decoded.getpixel((10, 10))[0] - expected.getpixel((10, 10))) <= 1
    assert decoded.getextrema()[0][0] < 250  # clipping would have made it all white


@pytest.mark.parametrize("high", [65535, 255], ids=["full_16_bit_range", "values_within_8_bits"])
def test_sixteen_bit_pixels_match_the_float64_rescale_exactly(high):
    """Integer maths (no float64 copy of the image) gives every pixel the value the old float64
    rescale gave: v / 257 truncated when any value passes 255, else v as is."""
    import numpy as np

    values = np.random.default_rng(7).integers(0, high + 1, (37, 53), dtype=np.uint16)
    values[0, :4] = [0, 256, 257, high]  # the edges of each rounding step
    as_float = values.astype(np.float64)
    scaled = as_float / (257.0 if as_float.max(initial=0) > 255 else 1.0)
    expected = np.clip(np.nan_to_num(scaled), 0, 255).astype(np.uint8)
    decoded = np.asarray(decode_image(png_bytes(Image.fromarray(values)), max_pixels=10**8))
    assert decoded.shape == (37, 53, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[..., channel], expected)


def test_transparency_is_flattened_onto_white(tile):
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert decode_image(png_bytes(clear), max_pixels=100).getpixel((0, 0)) == (255, 255, 255)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


BROKEN = {
    # name: (bytes, filename, content type, status, reason code)
    "zero_bytes": (lambda t: b"", "empty.png", "image/png", 400, "corrupt_image"),
    "text_named_png": (lambda t: b"just some notes\n" * 20, "notes.png", "image/png", 415, "unsupported_image"),
    "html_named_png": (lambda t: b"<!doctype html><script>alert(1)</script>", "x.png", "image/png", 415,
                       "unsupported_image"),
    "random_bytes": (lambda t: bytes(range(256)) * 40, "noise.bin", "application/octet-stream", 415,
                     "unsupported_image"),
    "truncated_jpeg": (lambda t: truncated(encode(t, "JPEG")), "cut.jpg", "image/jpeg", 400, "corrupt_image"),
    "truncated_png": (lambda t: truncated(png_bytes(t)), "cut.png", "image/png", 400, "corrupt_image"),
    "pdf": (lambda t: encode(t, "PDF"), "slide.pdf", "application/pdf", 415, "unsupported_image"),
    "eps_is_refused_not_rendered": (lambda t: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",
                                    "x.eps", "application/postscript", 415, "unsupported_image"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_uploads_get_a_clear_error_never_a_500(client, tile, kind):
    make, name, content_type, status, code = BROKEN[kind]
    response = predict(client, make(tile), name=name, content_type=content_type)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["detail"] and "Traceback" not in body["detail"] and "/" not in body["detail"]


def test_a_body_over_max_upload_mb_is_413_before_the_model_sees_it(demo_model_dir, fake_engine):
    app = create_app(demo_settings(demo_model_dir, max_upload_mb=1), engine=fake_engine)
    with TestClient(app) as small:
        response = predict(small, b"\x89PNG" + b"0" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert response.json()["error"] == "upload_too_large"
    assert fake_engine.questions == []


def test_a_chunked_body_over_the_limit_is_cut_off_while_streaming(demo_model_dir, fake_engine):
    app = create_app(demo_settings(demo_model_dir, max_upload_mb=1), engine=fake_engine)
    boundary = "healer-boundary"
    sent = []

    def body():  # no Content-Length: the server must count as the chunks arrive
        yield f"--{boundary}\r\nContent-Disposition: form-data; name=\"image_file\"; filename=\"a.png\"\r\n" \
              f"Content-Type: image/png\r\n\r\n".encode()
        for _ in range(64):
            sent.append(1)
            yield b"0" * 64 * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(app) as small:
        response = small.post("/predict", content=body(),
                              headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413
    assert response.json()["error"] == "upload_too_large"
    assert fake_engine.questions == []


def test_an_image_over_the_pixel_limit_is_413(demo_model_dir, fake_engine, tile):
    app = create_app(demo_settings(demo_model_dir, max_image_pixels=50_000), engine=fake_engine)
    with TestClient(app) as strict:
        response = predict(strict, png_bytes(tile))  # 300×200 = 60,000 pixels
    assert response.status_code == 413
    assert response.json()["error"] == "image_too_large"
    assert fake_engine.questions == []


def test_a_decompression_bomb_is_refused_without_decoding_it(client):
    bomb = png_bytes(Image.new("1", (15_000, 15_000)))  # 225 Mpixel in a few kB
    assert len(bomb) < 100_000
    response = predict(client, bomb, name="bomb.png")
    assert response.status_code == 413
    assert response.json()["error"] == "image_too_large"


def test_a_polyglot_is_read_as_the_image_it_starts_with_and_nothing_else(client, tile):
    # A valid PNG with an HTML page and a ZIP signature appended: decoded as the PNG only.
    polyglot = png_bytes(tile) + b"<html><script>alert(1)</script></html>PK\x03\x04" + b"\0" * 64
    response = predict(client, polyglot, name="x.html", content_type="text/html")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"


def test_the_declared_content_type_is_not_trusted(client, tile):
    # PNG bytes declared as JPEG are read as the PNG they are; text declared as PNG is refused.
    assert predict(client, png_bytes(tile), name="a.jpg", content_type="image/jpeg").status_code == 200
    assert predict(client, b"plain text", name="a.png", content_type="image/png").status_code == 415


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b'{"image_file": "aGVsbG8="}', "application/json"),
     (b"image_file=aGVsbG8%3D", "application/x-www-form-urlencoded"),
     (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png")],
)
def test_bodies_that_are_not_a_multipart_upload_get_422(fake_client, fake_engine, body, content_type):
    response = fake_client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert fake_engine.questions == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"--x\r\nbroken multipart without an end", "multipart/form-data; boundary=x"),
     (b"", "multipart/form-data")],
)
def test_a_multipart_body_that_cannot_be_parsed_gets_400(fake_client, fake_engine, body, content_type):
    response = fake_client.post("/predict", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "http_error"
    assert fake_engine.questions == []


def test_a_huge_question_is_refused_before_the_model(fake_client, fake_engine, tile):
    response = predict(fake_client, png_bytes(tile), question="Is it cancer? " * 70_000)  # ~1 MB
    assert response.status_code == 422
    assert response.json()["error"] == "question_too_long"
    assert fake_engine.questions == []
