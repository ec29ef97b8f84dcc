"""Errors a client can cause or meet, each with its HTTP status and a stable reason code.

    HealerError                         500  internal_error
    ├── BadImage                        400  corrupt_image       truncated, corrupt, empty
    ├── UnsupportedImage                415  unsupported_image   not an image, or a format we refuse
    ├── TooLarge                        413  upload_too_large    body over MAX_UPLOAD_MB
    │   ├── TooManyPixels               413  image_too_large     over MAX_IMAGE_PIXELS (bombs)
    │   ├── TooManyTiles                413  too_many_tiles      more tissue tiles than MAX_SLIDE_TILES
    │   └── SlideTooLarge               413  slide_too_large     a slide's header claims more than is read
    ├── BadQuestion                     422  question_too_long
    ├── Unauthorized                    401  unauthorized        API_KEY set, X-API-Key wrong
    ├── NotReady                        503  model_not_ready
    ├── Busy                            503  busy                queue full; Retry-After says when
    ├── EngineUnavailable               503  engine_unavailable  ENGINE=vllm: the engine unreachable, refusing, or gone mid-answer
    ├── TimedOut                        504  timeout             REQUEST_TIMEOUT_S passed
    │   └── EngineTimedOut              504  engine_timeout      ENGINE_TIMEOUT_S passed at the engine
    ├── BadSlide                        400  corrupt_slide       a slide file OpenSlide cannot read
    │   └── SlideReadTimeout            400  slide_read_timeout  reading it passed its deadline
    ├── WholeSlideImage                 415  whole_slide_image   a slide posted to /predict
    ├── UnsupportedSlide                415  unsupported_slide   not a whole-slide format
    ├── SlideNotFound                   404  slide_not_found     unknown id, or its results expired
    ├── UploadNotFound                  404  upload_not_found    no finished upload with this id
    ├── SlideNotReadable                403  slide_not_readable  a gs:// slide the service may not read
    ├── DirectUploadUnavailable         409  direct_upload_unavailable  SLIDE_STORE is not Cloud Storage
    └── ResultsNotReady                 409  results_not_ready   heatmap or tiles asked before done

The message is written for the person reading it; it never carries exception text or paths.
"""


class HealerError(Exception):
    status = 500
    code = "internal_error"
    message = "The service hit an unexpected error. Try again; if it persists, report the request id."

    def __init__(self, message: str | None = None):
        super().__init__(message or self.message)
        self.message = message or self.message

    @property
    def headers(self) -> dict[str, str]:
        return {}


class BadImage(HealerError):
    status = 400
    code = "corrupt_image"
    message = "The file could not be read as an image: it looks truncated or corrupt."


class UnsupportedImage(HealerError):
    status = 415
    code = "unsupported_image"
    message = "The file is not an image in a supported format (PNG, JPEG, TIFF, GIF, BMP or WebP)."


class TooLarge(HealerError):
    status = 413
    code = "upload_too_large"


class TooManyPixels(TooLarge):
    code = "image_too_large"


class SlideTooLarge(TooLarge):
    code = "slide_too_large"


class BadQuestion(HealerError):
    status = 422
    code = "question_too_long"


class Unauthorized(HealerError):
    status = 401
    code = "unauthorized"
    message = "This service needs an API key in the X-API-Key header (OpenAI clients: as their api_key)."


class NotReady(HealerError):
    status = 503
    code = "model_not_ready"
    message = "The model is not loaded yet. Try again shortly."


class Busy(HealerError):
    status = 503
    code = "busy"

    def __init__(self, retry_after_s: int):
        super().__init__(f"The service is busy. Try again in {retry_after_s} s.")
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class TimedOut(HealerError):
    status = 504
    code = "timeout"
    message = "The answer took longer than this service allows (REQUEST_TIMEOUT_S). Try again later."


class EngineUnavailable(HealerError):
    """The OpenAI-compatible engine (ENGINE=vllm) did not answer. The message names its URL, never its key."""

    status = 503
    code = "engine_unavailable"

    def __init__(self, engine_url: str, reason: str):
        super().__init__(f"The model engine at {engine_url} could not answer: {reason}. Try again shortly.")


class EngineTimedOut(TimedOut):
    code = "engine_timeout"

    def __init__(self, engine_url: str, timeout_s: float):
        super().__init__(f"The model engine at {engine_url} did not answer within {timeout_s:g} s "
                         "(ENGINE_TIMEOUT_S). Try again later.")


class BadSlide(HealerError):
    status = 400
    code = "corrupt_slide"
    message = "The file looks like a slide but could not be read: it may be truncated or corrupt."


class UnsupportedSlide(HealerError):
    status = 415
    code = "unsupported_slide"
    message = (
        "The file is not a whole-slide image this service reads (Aperio SVS, tiled TIFF, NDPI, "
        "SCN, BIF, Philips TIFF). For a single image, use /predict."
    )


class TooManyTiles(TooLarge):
    code = "too_many_tiles"


class SlideNotFound(HealerError):
    status = 404
    code = "slide_not_found"
    message = "There is no slide job with this id: it never existed, or its results expired."


class UploadNotFound(HealerError):
    status = 404
    code = "upload_not_found"
    message = (
        "There is no finished upload with this id: send every byte to the upload URL first (it "
        "answers 200 or 201 to the last chunk), or open a new upload."
    )


class SlideNotReadable(HealerError):
    status = 403
    code = "slide_not_readable"
    message = (
        "The service may not read this Cloud Storage object: grant its service account "
        "roles/storage.objectViewer on the bucket, or upload the slide instead."
    )


class DirectUploadUnavailable(HealerError):
    status = 409
    code = "direct_upload_unavailable"
    message = (
        "This service keeps slides on its own disk (SLIDE_STORE is not gs://), so it takes them "
        "as a multipart upload to POST /slides, not straight to Cloud Storage."
    )


class ResultsNotReady(HealerError):
    status = 409
    code = "results_not_ready"
    message = "The slide has no results yet: wait until its status is done."


class SlideReadTimeout(BadSlide):
    code = "slide_read_timeout"
    message = (
        "Reading the slide took longer than this service allows (SLIDE_READ_TIMEOUT_S): the file may "
        "be damaged, or built to be slow to read."
    )


class WholeSlideImage(HealerError):
    status = 415
    code = "whole_slide_image"
    message = (
        "This is a whole-slide image (a tiled pyramid such as SVS, NDPI or pyramidal TIFF). /predict "
        "answers one tile; upload the slide to /slides to have every tissue tile scored."
    )


class EngineStartError(RuntimeError):
    """ENGINE=vllm: the engine never became ready, or refuses Healer: one line that says why.
    Start-up's error, not a request's (no HTTP status)."""
