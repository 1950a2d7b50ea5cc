"""The HTTP/1.1 site of the client port, as etcd 3.5 serves it beside gRPC.

* ``/v3/...`` (and ``/v3beta/...``, which etcd rewrites to ``/v3/``): the JSON gateway,
  ``POST`` only, each path calling the gRPC method handler etcd's ``rpc.proto`` binds it
  to (``k8s_sql.gateway.routes``);
* ``/version``: ``{"etcdserver": ..., "etcdcluster": ...}``;
* ``/metrics``, ``/health``, ``/readyz``, ``/livez``: the pages of ``--metrics-listen``;
* anything else: Go's plain-text ``404 page not found``; an unknown ``/v3/`` path is
  ``Not Found`` and a method other than ``POST`` there ``Method Not Allowed``, as
  grpc-gateway answers them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

from twisted.internet.defer import Deferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from k8s_sql.etcd.maintenance import EtcdVersion
from k8s_sql.gateway.call import JSON, GatewayCall
from k8s_sql.gateway.jsonpb import dumps
from k8s_sql.gateway.request import ClientRequest
from k8s_sql.gateway.routes import routes
from k8s_sql.grpc.interfaces import IMethodLookup
from k8s_sql.grpc.status import StatusCode
from k8s_sql.metrics.web import MetricsSite

#: Request bodies up to this many times the largest request message are read: base64
#: takes 4/3 of the bytes it encodes, and field names and quotes some more.
BODY_FACTOR = 2

#: ``call_observer(method, code, duration)``, as ``GRPCServerFactory`` takes it.
CallObserver = Callable[[str, StatusCode, float], None]


class Gateway:
    """Serves gateway requests with the handlers of a method registry.

    @param registry: the registry the gRPC server dispatches on; each request looks its
        method up there, so calls are counted and served exactly as gRPC calls are.
    @param clock: deadlines and call durations.
    @param max_receive_message_length: the largest request message, in protobuf bytes,
        as the gRPC server's.
    @param call_observer: told of every call that ends, as ``GRPCServerFactory``'s.
    """

    log = Logger()

    def __init__(
        self,
        registry: IMethodLookup,
        clock: IReactorTime,
        *,
        max_receive_message_length: int,
        call_observer: CallObserver | None = None,
    ) -> None:
        self.registry = registry
        self.clock = clock
        self.max_receive_message_length = max_receive_message_length
        self.max_body_bytes = BODY_FACTOR * max_receive_message_length
        self.call_observer = call_observer
        self.routes = routes()
        #: The calls in progress.
        self.calls: set[GatewayCall] = set()
        #: Set by ``shutdown``: new calls are refused UNAVAILABLE.
        self.draining = False
        self._idle: list[Deferred[None]] = []

    def call_ended(self, call: GatewayCall, code: StatusCode, duration: float, *, ran: bool) -> None:
        """Forget ``call``; report it to the observer if its handler ``ran``.

        Requests refused before (bad JSON, a draining server) never reach etcd's gRPC
        server either, and are not counted.
        """
        self.calls.discard(call)
        if ran and self.call_observer is not None:
            try:
                self.call_observer(call.method, code, duration)
            except Exception:
                self.log.failure("The call observer failed")
        if not self.calls:
            idle, self._idle = self._idle, []
            for waiter in idle:
                if not waiter.called:
                    waiter.callback(None)

    async def shutdown(self, grace: float) -> None:
        """Refuse new calls; let those in progress end within ``grace`` seconds, then end
        them UNAVAILABLE."""
        self.draining = True
        if self.calls:
            idle: Deferred[None] = Deferred()
            self._idle.append(idle)
            idle.addTimeout(grace, self.clock)
            with contextlib.suppress(DeferredTimeout):
                await idle
        for call in list(self.calls):
            call.abort(StatusCode.UNAVAILABLE, "the server is shutting down")


class PlainError(Resource):
    """Go's ``http.Error``: a status and one line of plain text."""

    isLeaf = True

    def __init__(self, status: int, text: str, allow: bytes | None = None) -> None:
        super().__init__()
        self.status = status
        self.body = text.encode() + b"\n"
        self.allow = allow

    def render(self, request: Request) -> bytes:
        """The status and the text, whatever the method."""
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"x-content-type-options", b"nosniff")
        if self.allow is not None:
            request.setHeader(b"allow", self.allow)
        return self.body


_NO_PAGE = PlainError(404, "404 page not found")
_NOT_FOUND = PlainError(404, "Not Found")
_NOT_POST = PlainError(405, "Method Not Allowed")
_NOT_GET = PlainError(405, "Method Not Allowed", allow=b"GET")


class GatewayResource(Resource):
    """``/v3/``: each path is one gRPC method, called with the request's JSON."""

    isLeaf = True

    def __init__(self, gateway: Gateway) -> None:
        super().__init__()
        self.gateway = gateway

    def render(self, request: Request) -> bytes | int:
        """Start the call, or refuse an unknown path or a method other than POST."""
        path = request.path
        if path.startswith(b"/v3beta/"):
            path = b"/v3/" + path[len(b"/v3beta/") :]
        route = self.gateway.routes.get(path)
        if route is None:
            return _NOT_FOUND.render(request)
        if request.method != b"POST":
            return _NOT_POST.render(request)
        assert isinstance(request, ClientRequest)
        GatewayCall(self.gateway, request, route).start()
        return NOT_DONE_YET


class VersionPage(Resource):
    """``/version``: the emulated etcd version and its cluster version."""

    isLeaf = True

    def __init__(self, version: str) -> None:
        super().__init__()
        parsed = EtcdVersion.parse(version)
        if parsed is None:
            raise ValueError(f"not an etcd version: {version!r}")
        self.body = dumps({"etcdserver": version, "etcdcluster": parsed.cluster_version()})

    def render_GET(self, request: Request) -> bytes:
        """The versions, as JSON."""
        request.setHeader(b"content-type", JSON)
        return self.body


class ClientRoot(Resource):
    """The client port's root: the gateway, ``/version`` and the health and metrics pages."""

    def __init__(self, gateway: Resource, pages: dict[bytes, Resource]) -> None:
        super().__init__()
        self.gateway = gateway
        self.pages = pages

    def getChild(self, path: bytes, request: Request) -> Resource:
        """The resource named ``path``; GET only, except for the gateway."""
        if path in (b"v3", b"v3beta"):
            return self.gateway
        page = self.pages.get(path)
        if page is None:
            return _NO_PAGE
        if request.method not in (b"GET", b"HEAD"):
            return _NOT_GET
        return page


class ClientSite(MetricsSite):
    """The client port's HTTP/1.1 site; its requests are not access-logged, as gRPC calls are not."""

    def __init__(self, root: Resource, max_body: int, reactor: IReactorTime) -> None:
        super().__init__(root, reactor=reactor)
        self.requestFactory = partial(ClientRequest, max_body=max_body)  # type: ignore[assignment]


def client_site(gateway: Gateway, pages: dict[bytes, Resource], version: str) -> ClientSite:
    """The HTTP/1.1 site of the client port, for the emulated etcd ``version``.

    ``pages`` are served beside ``/version`` and the gateway (``metrics_pages``).
    """
    return ClientSite(
        ClientRoot(GatewayResource(gateway), {**pages, b"version": VersionPage(version)}),
        gateway.max_body_bytes,
        gateway.clock,
    )
