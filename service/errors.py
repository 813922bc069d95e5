"""Typed errors. Each carries an HTTP status, a machine-readable code and a sentence for a person.

The engine and the store raise these; the API turns them into JSON problem responses
(`{"error": {"code": ..., "message": ...}}`) in one place (service/api/errors.py).
"""

from __future__ import annotations


class DeltaServeError(Exception):
    status: int = 500
    code: str = "internal_error"
    retry_after: int | None = None  # seconds, sent as Retry-After (429, 503)

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class NotFoundError(DeltaServeError):
    status = 404
    code = "not_found"


class AdapterNotFound(NotFoundError):
    code = "adapter_not_found"


class PipelineNotFound(NotFoundError):
    code = "pipeline_not_found"


class InvalidRequest(DeltaServeError):
    """A request that is well-formed JSON but asks for something impossible."""

    status = 422
    code = "invalid_request"


def check_encodable(text: str, where: str) -> None:
    """JSON may carry a lone surrogate (an unpaired "\\ud800" escape): a Python str, but not text anything
    downstream can encode (the tokenizer, a UTF-8 file). Refuse it where it enters."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            f"{where} holds {text[exc.start : exc.end]!a}, which is not a character (a lone surrogate)"
        ) from None


class InvalidName(InvalidRequest):
    code = "invalid_name"


class AdapterError(InvalidRequest):
    """An adapter the engine cannot serve: bad config, unsupported kind, or made for another base model."""

    code = "invalid_adapter"


class InvalidAdapterConfig(AdapterError):
    code = "invalid_adapter_config"


class UnsupportedAdapter(AdapterError):
    code = "unsupported_adapter"


class IncompatibleAdapter(AdapterError):
    code = "incompatible_adapter"


class InvalidAdapterWeights(AdapterError):
    code = "invalid_adapter_weights"


class UploadError(DeltaServeError):
    status = 400
    code = "invalid_upload"


class PickleRefused(UploadError):
    status = 415
    code = "pickle_refused"


class UnsafeArchive(UploadError):
    code = "unsafe_archive"


class PayloadTooLarge(UploadError):
    status = 413
    code = "payload_too_large"

    @classmethod
    def upload(cls, limit: int) -> PayloadTooLarge:
        return cls(f"the upload is larger than the {limit} bytes allowed (DELTASERVE_MAX_UPLOAD_BYTES)")


class InvalidJson(DeltaServeError):
    """A JSON document from a client that does not parse, or nests deeper than allowed (service/json_limits.py)."""

    status = 400
    code = "invalid_json"


class JsonTooDeep(InvalidJson):
    pass


class JsonTooLarge(InvalidJson):
    status = 413
    code = "payload_too_large"


class Unauthorized(DeltaServeError):
    status = 401
    code = "unauthorized"


class Forbidden(DeltaServeError):
    status = 403
    code = "forbidden"


class EngineUnavailable(DeltaServeError):
    status = 503
    code = "not_ready"
    retry_after = 5


class ShuttingDown(EngineUnavailable):
    """The server is draining before it exits: requests already accepted finish, new ones go elsewhere."""

    code = "shutting_down"


class Overloaded(DeltaServeError):
    """A bound on queued work is reached; the same request may succeed shortly (TGI's 429)."""

    status = 429
    code = "overloaded"
    retry_after = 1


class DeadlineExceeded(DeltaServeError):
    """The request waited in the queue past its deadline (DELTASERVE_REQUEST_TIMEOUT_S) without starting."""

    status = 503
    code = "deadline_exceeded"
    retry_after = 1


class ReplicaFailed(DeltaServeError):
    """Scale-out on Ray Serve: the replica running this request died; the others (and its replacement) take the
    next requests, so the same request may be sent again."""

    status = 503
    code = "replica_failed"
    retry_after = 1


class RequestTimeout(DeltaServeError):
    """The client sent its request body too slowly."""

    status = 408
    code = "request_timeout"


class RowFailed(DeltaServeError):
    """One row of a batch failed (the other rows of its batch went on)."""

    status = 500
    code = "row_failed"


class NonFiniteLogits(RowFailed):
    """The model's output for this row was not finite (inf or NaN), so no token could be chosen."""

    code = "non_finite_logits"


class ClientDisconnected(DeltaServeError):
    """The client went away before its answer was ready; its rows were dropped (nginx's 499)."""

    status = 499
    code = "client_disconnected"
