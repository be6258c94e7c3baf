"""One module per resource. Every router but health's builds its routes with KeyedRoute."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.schemas import ErrorOut

MISSING_KEY = "missing API key: send it in the X-API-Key header"
NOT_JSON = "the request body must be JSON: send it with Content-Type: application/json"
NOT_COMPRESSED = "the request body must not be compressed (Content-Encoding: {}): send the JSON as it is"
# What each error status means, as the OpenAPI schema lists it beside the route's answers: a
# client generated from the schema handled only 200 and 422, and took a 404 or a 409 for a
# breakdown of the service rather than an answer it should act on.
ERRORS = {
    400: "The body is not text in UTF-8.",
    401: "No API key, or one that is unknown or revoked.",
    403: "The key's role may not use this endpoint.",
    404: "No such triage (or, for resolve, none in the review queue).",
    409: "The request conflicts with what is stored: the item was already resolved, or a model registry governs.",
    413: "The body is over the size limit (TRIAGE_MAX_REQUEST_BYTES).",
    415: "The body is not sent as JSON, or is compressed (send it without Content-Encoding).",
    503: "The database or the model is unavailable: send the request again shortly.",
}
# Every route that needs a key can answer these; routes with a body also the body's.
KEYED_ERRORS = (401, 403, 503)
BODY_ERRORS = (400, 413, 415)


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route or router: these error statuses, each with its {detail} body."""
    return {code: {"model": ErrorOut, "description": ERRORS[code]} for code in codes}


class InvalidField(HTTPException):
    """A 422 in the shape of FastAPI's own validation errors: `detail` is a list of
    {type, loc, msg}, as the OpenAPI schema says of every 422, so that a client reads the
    service's own refusals (an unknown division, a body over the limit) as it reads a
    missing field. `message` is the text alone, which the pages show."""

    def __init__(self, loc: tuple[str, ...], message: str) -> None:
        super().__init__(422, [{"type": "value_error", "loc": list(loc), "msg": message}])
        self.message = message


def error_text(exc: HTTPException) -> str:
    """What a page shows for an error of the API's functions."""
    return exc.message if isinstance(exc, InvalidField) else str(exc.detail)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _printable(value: Any) -> Any:
    # A lone surrogate or a NaN/infinity cannot be written as JSON; the 422 would become a 500.
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return _printable(str(value))


def _without_input(error: dict[str, Any]) -> dict[str, Any]:
    # The submitted value is not echoed: it may be petition text holding a resident ID or a phone number.
    safe = {k: error[k] for k in ("type", "msg") if k in error}
    safe["loc"] = [_printable(part) for part in error.get("loc", ())]
    if isinstance(error.get("ctx"), dict):
        safe["ctx"] = {str(k): _printable(v) for k, v in error["ctx"].items()}
    return safe


class KeyedRoute(APIRoute):
    """A route that needs an X-API-Key. A request without one is answered 401 before its
    body is read or parsed, so nobody without a key gets the server to parse JSON or learns
    more than that a key is needed; and a 422 names the field and the problem, never the value."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def keyed(request: Request) -> Response:
            if not request.headers.get("x-api-key"):
                raise HTTPException(401, MISSING_KEY)
            content_type = request.headers.get("content-type")
            # A body of another type is not something this API reads (422 would say it was the wrong JSON).
            if self.body_field is not None and content_type is not None and not _is_json(content_type):
                raise HTTPException(415, NOT_JSON)
            coding = request.headers.get("content-encoding", "identity").strip().lower()
            # A gzip body was read as text and refused as "not UTF-8 ... GBK", which sent the
            # integrator looking for a character set problem; RFC 7694 answers 415 and says which
            # coding is accepted.
            if self.body_field is not None and coding not in ("", "identity"):
                raise HTTPException(415, NOT_COMPRESSED.format(coding), headers={"Accept-Encoding": "identity"})
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise RequestValidationError([_without_input(e) for e in exc.errors()]) from None
            except StarletteHTTPException as exc:  # the base class: the body's parser raises it, not FastAPI's
                if exc.status_code == 400 and self.body_field is not None:
                    _refuse_undecodable(await request.body())
                raise

        return keyed


def _refuse_undecodable(body: bytes) -> None:
    """A body that is not text in JSON's encodings raises a 400 that says so.

    FastAPI answers "There was an error parsing the body" for it, which tells a client
    posting from a GBK system (many office PCs in China) nothing about what to change.
    Looked at only once a body has failed to parse: a good request pays nothing."""
    try:
        body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the request body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}): "
                                 "send the JSON encoded as UTF-8; GBK or GB18030 text cannot be read") from None
