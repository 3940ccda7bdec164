"""The drift check's network side: re-send planned requests live and judge the answers.

Sends with httpx (async, HTTP/1.1, the recorded headers in their order and case, no
defaults added), at most ``concurrency`` requests in flight and ``rate`` per second
per host. A host that cannot be reached (DNS, refused, TLS, connect timeout) is not
tried again in the same run: the rest of its requests are reported as errors at once.
Planning and judging are pure (``replayproxy.drift.plan``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from replayproxy.cassette.format import encode_interaction
from replayproxy.cassette.journal import recover_journals
from replayproxy.cassette.store import cassette_path, load_cassette, save_cassette
from replayproxy.drift.clean import Scrubber
from replayproxy.drift.plan import (
    Checked,
    DriftConfig,
    DriftReport,
    Outcome,
    Pacer,
    Planned,
    Skip,
    endpoint_of,
    interaction_key,
    judge,
    plan_request,
    stream_skip,
)
from replayproxy.errors import CassetteError, LiveError, ReplayproxyError
from replayproxy.model import Interaction, Request, Response
from replayproxy.redaction.redactor import Redactor
from replayproxy.redaction.scan import scan_interaction
from replayproxy.upstream import Egress, egress_from, trust_bundle

__all__ = ["Job", "LiveError", "check", "load_jobs", "update_cassettes"]

_MAX_BODY = 64 * 1024 * 1024
_CLIENT_DEFAULTS = ("accept", "accept-encoding", "connection", "user-agent")


@dataclass(frozen=True, slots=True)
class Job:
    """One recorded interaction to check."""

    cassette: str
    index: int
    key: str
    interaction: Interaction


def load_jobs(cassette_dir: Path, names: Sequence[str], report: DriftReport) -> list[Job]:
    """The interactions of the named cassettes; a cassette that is missing or unreadable
    becomes a problem of ``report`` (the others are still checked)."""
    jobs: list[Job] = []
    for name in names:
        try:
            path = cassette_path(cassette_dir, name)
            recover_journals(path)
            if not path.exists():
                raise CassetteError(
                    f"cassette {name!r} does not exist in {cassette_dir}: record it first "
                    f"(replayproxy record -c {name} -- CMD) or check --cassette-dir")
            cassette = load_cassette(path, name)
        except ReplayproxyError as e:
            report.problems.append(str(e))
            continue
        seen: dict[tuple[str, str], int] = {}
        for index, it in enumerate(cassette.interactions()):
            ident = (it.request.method, it.request.url)
            seen[ident] = seen.get(ident, 0) + 1
            jobs.append(Job(name, index, interaction_key(it.request, seen[ident]), it))
    return jobs


def _causes(e: BaseException) -> list[BaseException]:
    """``e`` and what caused it (httpx wraps httpcore wraps anyio wraps the OSError)."""
    chain: list[BaseException] = []
    current: BaseException | None = e
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _describe(e: httpx.HTTPError, request: Request) -> LiveError:
    where = f"{request.host}:{request.port}"
    chain = _causes(e)
    root = chain[-1]
    text = str(root) or type(root).__name__
    if isinstance(e, httpx.ConnectTimeout):
        return LiveError(f"timed out connecting to {where}", unreachable=True)
    if isinstance(e, httpx.TimeoutException):
        return LiveError(f"{where} did not answer in time ({type(e).__name__}); raise "
                         f"--timeout if the sandbox is slow", unreachable=False)
    if isinstance(e, httpx.ConnectError):
        if any(isinstance(c, ssl.SSLError) for c in chain):
            return LiveError(f"TLS handshake with {where} failed: {text}; pass --upstream-ca "
                             f"for a sandbox with its own CA", unreachable=True)
        if any(isinstance(c, socket.gaierror) for c in chain):
            return LiveError(f"cannot resolve {request.host} (DNS): {text}", unreachable=True)
        if any(isinstance(c, ConnectionRefusedError) for c in chain):
            return LiveError(f"connection refused by {where}: is the live API up, and is "
                             f"the origin right (--origin)?", unreachable=True)
        return LiveError(f"cannot connect to {where}: {text}", unreachable=True)
    return LiveError(f"live call to {where} failed: {type(e).__name__}: {text}",
                     unreachable=False)


def _tls_context(upstream_cas: Sequence[bytes], insecure: bool,
                 environ: Mapping[str, str]) -> ssl.SSLContext:
    """The recording's upstream trust (``replayproxy.upstream.trust_bundle``)."""
    context = ssl.create_default_context()
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context.load_verify_locations(cadata=trust_bundle(upstream_cas, environ).decode("latin-1"))
    return context


class _EgressTransport(httpx.AsyncBaseTransport):
    """Each request direct or through the egress proxy, as ``Egress`` says (the same
    rules as recording, ``NO_PROXY`` included)."""

    def __init__(self, egress: Egress, verify: ssl.SSLContext, limits: httpx.Limits) -> None:
        self.egress = egress
        self.direct = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
        self.proxied = {
            proxy: httpx.AsyncHTTPTransport(
                verify=verify, limits=limits,
                proxy=httpx.Proxy(proxy.url, auth=(proxy.username, proxy.password or "")
                                  if proxy.username is not None else None))
            for proxy in egress.proxies()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        proxy = self.egress.for_url(url.scheme, url.host, url.port or
                                    (443 if url.scheme == "https" else 80))
        transport = self.proxied[proxy] if proxy is not None else self.direct
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self.direct.aclose()
        for transport in self.proxied.values():
            await transport.aclose()


async def _send(client: httpx.AsyncClient, request: Request) -> tuple[Response, float]:
    """Send ``request`` exactly (headers in order, no client defaults added); return the
    response with its body as on the wire, and the seconds it took."""
    sent = client.build_request(request.method, request.url,
                                headers=list(request.headers), content=request.body or None)
    names = {k.lower() for k, _ in request.headers}
    for name in _CLIENT_DEFAULTS:
        if name not in names and name in sent.headers:
            del sent.headers[name]
    start = time.monotonic()
    try:
        response = await client.send(sent, stream=True)
        try:
            chunks, size = [], 0
            async for chunk in response.aiter_raw():
                size += len(chunk)
                if size > _MAX_BODY:
                    raise LiveError(f"the live response of {request.method} {request.url} is "
                                    f"over {_MAX_BODY >> 20} MiB; not compared",
                                    unreachable=False)
                chunks.append(chunk)
        finally:
            await response.aclose()
    except httpx.HTTPError as e:
        raise _describe(e, request) from None
    headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw)
    return (Response(response.status_code, response.reason_phrase, headers, b"".join(chunks),
                     response.http_version),
            time.monotonic() - start)


class _Runner:
    def __init__(self, config: DriftConfig, on_result: Callable[[Checked], None]) -> None:
        self.config = config
        self.on_result = on_result
        self.pacer = Pacer(config.rate)
        self.down: dict[str, str] = {}
        self.limit = asyncio.Semaphore(max(1, config.concurrency))

    async def _call(self, client: httpx.AsyncClient, request: Request) -> tuple[Response, float]:
        host = f"{request.host}:{request.port}"
        wait = self.pacer.reserve(host, time.monotonic())
        if wait > 0:
            await asyncio.sleep(wait)
        if host in self.down:
            raise LiveError(f"not sent: {host} was unreachable earlier in this run "
                            f"({self.down[host]})", unreachable=False)
        try:
            return await _send(client, request)
        except LiveError as e:
            if e.unreachable:
                self.down.setdefault(host, str(e))
            raise

    async def run_one(self, client: httpx.AsyncClient, base: Checked, plan: Planned,
                      scrub: Scrubber) -> Checked:
        """Send ``plan`` (twice if it repeats) and judge the answers, redacted by
        ``scrub`` before anything compares or keeps them."""
        async with self.limit:
            try:
                live, elapsed = await self._call(client, plan.request)
                again = (await self._call(client, plan.request))[0] if plan.repeat else None
            except LiveError as e:
                result = replace(base, outcome=Outcome.ERROR, message=scrub.text(str(e)))
            else:
                sent = plan.at_recorded_origin or plan.request
                live = scrub.response(sent, live)
                again = scrub.response(sent, again) if again is not None else None
                assert base.recorded is not None
                judged = judge(base, base.recorded, live, again, plan.ignore)
                result = replace(judged, elapsed=elapsed,
                                 findings=tuple(scrub.finding(f) for f in judged.findings))
        self.on_result(result)
        return result


def _base(job: Job, plan: Planned | Skip, scrub: Scrubber) -> Checked:
    """The identity of a result, cleaned: the live URL (it holds the credentials put
    in), and the recorded URL, key and response too (a cassette written with older
    rules may hold what today's rules catch)."""
    request = job.interaction.request
    live_url = scrub.text(plan.request.url) if isinstance(plan, Planned) else ""
    return Checked(job.cassette, job.index, scrub.text(job.key),
                   scrub.text(endpoint_of(request)), request.method, scrub.text(request.url),
                   Outcome.SKIPPED, live_url=live_url,
                   recorded=scrub.response(request, job.interaction.response))


def check(jobs: Sequence[Job], config: DriftConfig, environ: Mapping[str, str], *,
          upstream_cas: Sequence[bytes] = (), upstream_insecure: bool = False,
          egress: Egress | None = None,
          on_result: Callable[[Checked], None] = lambda _r: None,
          redactor: Redactor | None = None,
          ) -> tuple[list[Checked], dict[tuple[str, str], Planned]]:
    """Check every job; results in job order, and the plans by (cassette, result key).

    ``upstream_cas`` (PEM) are trusted besides this machine's trust as ``environ`` gives
    it; ``egress`` (default: from ``environ``'s proxy variables) says which requests go
    through a proxy. Every live response is redacted with ``redactor`` (the recording's
    rules; None: the built-in ones), knowing the credentials put into its request,
    before it is compared; messages and live URLs are cleaned the same way
    (``replayproxy.drift.clean``).
    """
    plans: dict[tuple[str, str], Planned] = {}
    scrubber = Scrubber(redactor)
    results: list[Checked | None] = [None] * len(jobs)
    log_filter = _CleanLog(scrubber)

    async def main() -> None:
        runner = _Runner(config, on_result)
        tasks: dict[int, asyncio.Task[Checked]] = {}
        limits = httpx.Limits(max_connections=max(1, config.concurrency))
        verify = _tls_context(upstream_cas, upstream_insecure, environ)
        route = egress if egress is not None else egress_from(None, environ)
        async with httpx.AsyncClient(transport=_EgressTransport(route, verify, limits),
                                     trust_env=False, timeout=config.timeout,
                                     follow_redirects=False) as client:
            for i, job in enumerate(jobs):
                plan = stream_skip(job.interaction) or plan_request(
                    job.interaction.request, config, environ)
                scrub = scrubber.knowing(plan.credentials) if isinstance(plan, Planned) \
                    else scrubber
                base = _base(job, plan, scrub)
                if isinstance(plan, Skip):
                    skipped = replace(base, outcome=Outcome.ERROR if plan.error
                                      else Outcome.SKIPPED, message=scrub.text(plan.reason))
                    results[i] = skipped
                    on_result(skipped)
                    continue
                plans[(job.cassette, base.key)] = plan
                tasks[i] = asyncio.create_task(runner.run_one(client, base, plan, scrub))
            # every plan is made before the first request is sent (no await above)
            log_filter.scrub = scrubber.knowing(
                [c for plan in plans.values() for c in plan.credentials])
            for i, task in tasks.items():
                results[i] = await task

    loggers = [logging.getLogger(name) for name in _CLIENT_LOGGERS]
    for logger in loggers:
        logger.addFilter(log_filter)
    try:
        asyncio.run(main())
    finally:
        for logger in loggers:
            logger.removeFilter(log_filter)
    return [r for r in results if r is not None], plans


_CLIENT_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2",
                   "httpcore.proxy", "httpcore.socks")
"""Loggers of the HTTP client: httpx names every URL sent (``HTTP Request: GET …``) at
INFO, httpcore every response header at DEBUG. (A filter applies to the records of its
own logger only, so each is named.)"""


class _CleanLog(logging.Filter):
    """Cleans the HTTP client's log records while the check runs: a URL sent holds the
    credentials put in, and an application logging at INFO would print it."""

    def __init__(self, scrub: Scrubber) -> None:
        super().__init__()
        self.scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: shown as the bare format
            message = str(record.msg)
        if record.name.startswith("httpcore.") and "headers" in message.split(" ", 1)[0]:
            message = message.split(" ", 1)[0]  # the event, not the headers it carried
        record.msg, record.args = self.scrub.text(message), None
        return True


def update_cassettes(cassette_dir: Path, report: DriftReport, jobs: Sequence[Job],
                     plans: Mapping[tuple[str, str], Planned], redactor: Redactor) -> None:
    """Re-record breaking and changed interactions: the recorded request stays, the live
    response replaces the recorded one, redacted (and scanned) like a recording.

    An interaction that still holds a secret after redaction is not written; it becomes
    a problem of the report. Each cassette is rewritten atomically.
    """
    by_index = {(j.cassette, j.index): j for j in jobs}
    changed: dict[str, dict[int, Interaction]] = {}
    for result in report.results:
        if result.outcome not in (Outcome.BREAKING, Outcome.CHANGED) or result.live is None:
            continue
        job = by_index[(result.cassette, result.index)]
        plan = plans[(result.cassette, result.key)]
        sent = plan.at_recorded_origin or plan.request
        redacted = redactor.redact(Interaction(sent, result.live))
        fresh = Interaction(job.interaction.request, redacted.response, time.time(),
                            result.elapsed, result.elapsed)
        leaks = scan_interaction(fresh, redactor.config)
        if leaks:
            report.problems.append(f"{result.key} in {result.cassette} not updated: the live "
                                   f"response still holds a secret after redaction "
                                   f"({leaks[0].describe()})")
            continue
        changed.setdefault(result.cassette, {})[result.index] = fresh
        report.updated.append(f"{result.cassette}: {result.key}")
    for name, replacements in changed.items():
        path = cassette_path(cassette_dir, name)
        cassette = load_cassette(path, name)
        entries = [encode_interaction(replacements[i]) if i in replacements else cassette.entry(i)
                   for i in range(len(cassette))]
        save_cassette(path, entries)
