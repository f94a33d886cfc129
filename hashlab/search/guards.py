"""What `hashlab serve` does before a request reaches its route: the Host check and the body limit, as ASGI
middleware, and the refusals' wording. docs/search.md lists every route and its limits; docs/errors.md what
a hostile request gets."""

from __future__ import annotations

import asyncio
import json

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MAX_QUERY_STRING = 8_192  # bytes after "?": 100 ids of 18 digits take under 2,000
DRAIN_SECONDS = 5.0  # the longest a refused body is read (and dropped) so that its client can read the 413


def host_name(host: str) -> str:
    """'localhost:8000' -> 'localhost', '[::1]:8000' -> '[::1]', an IPv6 --host '::1' -> '[::1]'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1]
    if host.count(":") > 1:  # a bare IPv6 address, as --host takes it
        return f"[{host}]"
    return host.split(":", 1)[0]


async def refuse(send, status: int, message: str, headers: dict | None = None, more_body: bool = False) -> None:
    """Answer {"error": message} straight from a middleware (the routes' refusals have the same shape)."""
    body = json.dumps({"error": message}, separators=(",", ":")).encode()  # as JSONResponse writes it
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *((k.encode(), v.encode()) for k, v in (headers or {}).items())]})
    await send({"type": "http.response.body", "body": body, "more_body": more_body})


class TrustedHosts:
    """Answers only requests whose Host header names this server: 127.0.0.1, localhost, [::1], the --host
    it listens on and any --allowed-host. Against DNS rebinding: a web page whose own name its author points
    at 127.0.0.1 is, to a browser, the same origin as that name, and could read every route (features,
    encoder, images) from a local server; its requests carry its name as Host. '*' turns the check off."""

    def __init__(self, app, hosts):
        self.app = app
        self.hosts = {host_name(h) for h in hosts if h not in ("0.0.0.0", "::")}  # all interfaces: no name
        self.any = "*" in hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self.any:
            return await self.app(scope, receive, send)
        name = host_name(Headers(scope=scope).get("host", ""))
        if name in self.hosts:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        await refuse(send, 400, f"Host {name[:100]!r} is not a name of this server ({', '.join(sorted(self.hosts))}): "
                                "reach it by one of those, or start it with --allowed-host NAME")


class BodyTooLarge(HTTPException):
    """Raised from the body's stream (an HTTPException, so FastAPI's body parsing passes it on unchanged)."""

    def __init__(self, message: str):
        super().__init__(413, message, headers={"Connection": "close"})


class RequestLimits:
    """A request body over its route's limit is refused while it streams, never read to its end: a declared
    Content-Length over the limit at once, before any of the body is read; a body without one (chunked) when
    its bytes pass the limit. ``limit_of(path) -> (bytes, what to tell the client)``.

    The 413 goes out whole first; then up to the limit's worth more of the body is read and dropped (at
    most DRAIN_SECONDS), so that a client that sends its whole body before it reads (urllib, most scripts)
    still gets the 413 when it sent a little too much; then the connection is closed, and a client still
    sending gets a reset. A query string over MAX_QUERY_STRING gets 414."""

    def __init__(self, app, limit_of):
        self.app, self.limit_of = app, limit_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if len(scope.get("query_string", b"")) > MAX_QUERY_STRING:
            return await refuse(send, 414, f"query string over {MAX_QUERY_STRING} bytes: ask for fewer ids at a time")
        limit, advice = self.limit_of(scope["path"])
        headers = Headers(scope=scope)
        expects_continue = headers.get("expect", "").lower() == "100-continue"
        try:
            declared = int(headers.get("content-length", ""))
        except ValueError:
            declared = None
        if declared is not None and declared > limit:
            await refuse(send, 413, f"request body of {declared} bytes, over this route's limit of {limit}: {advice}",
                         {"Connection": "close"}, more_body=True)
            if not expects_continue:  # such a client waits for the answer before it sends the body
                await self.drain(receive, limit)
            return await send({"type": "http.response.body", "body": b"", "more_body": False})

        received, refused = 0, False

        async def counted():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise BodyTooLarge(f"request body over this route's limit of {limit} bytes: {advice}")
            return message

        async def answer(message):
            if refused and message["type"] == "http.response.body" and not message.get("more_body", False):
                await send({**message, "more_body": True})  # the whole 413, then the drain, then the close
                await self.drain(receive, limit)
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app(scope, counted, answer)

    @staticmethod
    async def drain(receive, limit: int) -> None:
        """Read and drop up to ``limit`` bytes more of a refused body, for at most DRAIN_SECONDS."""
        dropped = 0
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while dropped <= limit:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return
                    dropped += len(message.get("body", b""))
        except TimeoutError:
            pass


FIELD_HINTS = {  # what each parameter takes, for the 422 that names it
    "id": "an indexed image's catalog id, a whole number",
    "image_id": "an indexed image's catalog id, a whole number",
    "k": "a whole number of results",
    "thumb": "0 or 1",
    "rerank": "a re-ranking's name",
    "image": "the query image, as the multipart field 'image'",
    "ids": "catalog ids, comma-separated",
}


def describe_validation(errors) -> str:
    """FastAPI's validation errors -> one line naming each field and what it takes, never echoing the input
    (a 10 KB id would come back whole in FastAPI's own answer)."""
    lines = []
    for error in list(errors)[:3]:
        if error.get("type") == "json_invalid":  # its loc is the offset of the fault
            lines.append("body: not valid JSON")
            continue
        where = [str(part) for part in error.get("loc", ()) if part not in ("query", "path", "body")]
        field = ".".join(where)[:40] or "body"
        hint = FIELD_HINTS.get(field)
        lines.append(f"{field}: {error.get('msg', 'invalid').lower()[:120]}" + (f" ({hint})" if hint else ""))
    return "; ".join(lines)
