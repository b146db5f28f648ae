"""Who may address the service: the Host allow-list and the cross-origin refusal.

- Host (CXR_ALLOWED_HOSTS): a service on loopback without keys is reachable from any web page
  the user opens, through DNS rebinding (attacker.example resolving to 127.0.0.1). Its answers
  would then be the attacker's to read. So a request whose Host is not allowed is refused
  (400 host_not_allowed). Default: the loopback names when listening on loopback; any host when
  listening beyond it (keys are then required, and the Service or proxy name is the deployment's
  to add: CXR_ALLOWED_HOSTS=cxr-pneumonia,cxr-pneumonia.default.svc). The health probes are
  answered whatever the Host (Kubernetes probes name the pod's IP; they tell nothing about anyone).
- Origin (CXR_ALLOWED_ORIGINS): a browser sends a cross-origin "simple" POST (multipart) without
  asking first, so any page could make the service do heavy work, heatmaps included. A request
  that changes something (anything but GET, HEAD, OPTIONS) and carries an Origin other than the
  service's own (or one listed) is refused (403 origin_not_allowed) before its body is read.
  Clients that are not browsers send no Origin and are not affected.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from service.http.errors import refuse

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ANY_HOST_PATHS = ("/health/",)


def host_name(host: str) -> str:
    """'example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'; lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class HostOriginMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str], allowed_origins: Iterable[str] = ()):
        self.app = app
        hosts = {host_name(h) for h in allowed_hosts}
        self.any_host = "*" in hosts
        self.hosts = frozenset(hosts)
        self.origins = frozenset(o.strip().lower().rstrip("/") for o in allowed_origins)
        self.any_origin = "*" in self.origins

    def _header(self, scope: Scope, name: bytes) -> str | None:
        for key, value in scope["headers"]:
            if key == name:
                return str(value.decode("latin-1"))
        return None

    def _host_allowed(self, host: str | None) -> bool:
        return self.any_host or (host is not None and host_name(host) in self.hosts)

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        if self.any_origin or origin.lower().rstrip("/") in self.origins:
            return True
        parts = urlsplit(origin)
        # same origin: the page at / posting to /predict (a proxy in front keeps the Host)
        return bool(parts.netloc) and host is not None and parts.netloc.lower() == host.strip().lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = self._header(scope, b"host")
        if not self._host_allowed(host) and not scope["path"].startswith(ANY_HOST_PATHS):
            await refuse(scope, send, "host_not_allowed",
                          "this service does not answer to that Host name; add it to CXR_ALLOWED_HOSTS")
            return
        origin = self._header(scope, b"origin")
        if origin is not None and scope["method"] not in SAFE_METHODS and not self._origin_allowed(origin, host):
            await refuse(scope, send, "origin_not_allowed",
                          "cross-origin requests are not accepted; add the origin to CXR_ALLOWED_ORIGINS")
            return
        await self.app(scope, receive, send)
