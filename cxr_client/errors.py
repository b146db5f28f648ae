"""What can go wrong talking to the service."""

from __future__ import annotations


class ServiceError(Exception):
    """The service answered with an error (4xx/5xx) that retrying will not fix, or gave up."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 request_id: str | None = None):
        super().__init__(message)
        self.status, self.code, self.request_id = status, code, request_id

    def __str__(self) -> str:
        head = f"HTTP {self.status} {self.code}: " if self.status else ""
        return head + super().__str__()


class ServiceUnavailable(ServiceError):
    """The service could not be reached, or kept answering 429/503, for every attempt."""
