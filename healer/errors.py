"""Errors a client can cause or meet, each with its HTTP status and a stable reason code.

    HealerError                         500  internal_error
    ├── BadImage                        400  corrupt_image       truncated, corrupt, empty
    ├── UnsupportedImage                415  unsupported_image   not an image, or a format we refuse
    ├── TooLarge                        413  upload_too_large    body over MAX_UPLOAD_MB
    │   └── TooManyPixels               413  image_too_large     over MAX_IMAGE_PIXELS (bombs)
    ├── BadQuestion                     422  question_too_long
    ├── Unauthorized                    401  unauthorized        API_KEY set, X-API-Key wrong
    ├── NotReady                        503  model_not_ready
    ├── Busy                            503  busy                queue full; Retry-After says when
    └── TimedOut                        504  timeout             REQUEST_TIMEOUT_S passed

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


class BadQuestion(HealerError):
    status = 422
    code = "question_too_long"


class Unauthorized(HealerError):
    status = 401
    code = "unauthorized"
    message = "This service needs an API key in the X-API-Key header."


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
