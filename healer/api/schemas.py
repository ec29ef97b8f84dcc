"""The JSON body of every error answer."""

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="Stable machine-readable reason code", examples=["corrupt_image"])
    detail: str = Field(description="What went wrong, for a person")
    request_id: str
