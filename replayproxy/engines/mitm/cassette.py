"""The mitmproxy addon that records flows into a cassette and replays them.

A thin adapter: it turns a flow into a core ``Request``, asks the core
``CassetteSession`` what to do, and carries the answer out. Load it in mitmdump with
``addons/record.py`` or ``addons/replay.py``, or let ``replayproxy`` build it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.proxy import server_hooks

from replayproxy.config import home_dir, load_settings
from replayproxy.decision.session import CassetteSession, Forward, Replay, SessionSummary
from replayproxy.errors import ReplayproxyError
from replayproxy.model import Interaction, RecordMode, Request, Response
from replayproxy.redaction.redactor import Redactor, load_key

__all__ = ["CassetteAddon", "request_from_flow"]

log = logging.getLogger("replayproxy")

_META = "replayproxy"
_OFFLINE = (
    "replayproxy is replaying offline: no upstream connections (record with "
    "`replayproxy record` or use --record-mode new_episodes)"
)


def _headers(h: http.Headers, *, drop_proxy: bool = False) -> tuple[tuple[str, str], ...]:
    """Headers as (name, value) str pairs; ``drop_proxy`` drops Proxy-* headers, which
    a client sends to the proxy itself and which never reach the upstream."""
    return tuple(
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in h.fields
        if not (drop_proxy and k.lower().startswith(b"proxy-"))
    )


def _split(path: str) -> tuple[str, str]:
    path_only, _, query = path.partition("?")
    return path_only, query


def request_from_flow(req: http.Request) -> Request:
    """Convert a mitmproxy request to the core model (body as on the wire)."""
    path, query = _split(req.path)
    return Request(
        method=req.method,
        scheme=req.scheme,
        host=req.host,
        port=req.port,
        path=path,
        query=query,
        headers=_headers(req.headers, drop_proxy=True),
        body=req.raw_content or b"",
        http_version=req.http_version,
    )


def _response_from_flow(resp: http.Response) -> Response:
    return Response(
        status=resp.status_code,
        reason=resp.reason,
        headers=_headers(resp.headers),
        body=resp.raw_content or b"",
        http_version=resp.http_version,
    )


def _interaction_from_flow(flow: http.HTTPFlow) -> Interaction:
    assert flow.response is not None
    req, resp = flow.request, flow.response
    start = req.timestamp_start
    return Interaction(
        request=request_from_flow(req),
        response=_response_from_flow(resp),
        recorded_at=round(start, 3),
        ttfb=round(max(0.0, resp.timestamp_start - start), 6),
        duration=round(max(0.0, (resp.timestamp_end or resp.timestamp_start) - start), 6),
    )


def _to_flow_response(recorded: Response) -> http.Response:
    now = time.time()
    return http.Response(
        http_version=recorded.http_version.encode("latin-1"),
        status_code=recorded.status,
        reason=recorded.reason.encode("latin-1"),
        headers=tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in recorded.headers),
        content=recorded.body,
        trailers=None,
        timestamp_start=now,
        timestamp_end=now,
    )


def _plain(status: int, text: str, marker: str) -> http.Response:
    return http.Response.make(
        status,
        text.encode("utf-8"),
        {"Content-Type": "text/plain; charset=utf-8", "X-Replayproxy": marker},
    )


class CassetteAddon:
    """Record flows into a cassette and replay them from it.

    Given a ``session``, the addon uses it; otherwise it builds one from its options
    (``replayproxy_cassette`` and friends), which is how mitmdump scripts use it.
    """

    def __init__(
        self, session: CassetteSession | None = None, *, default_mode: RecordMode = RecordMode.NONE
    ) -> None:
        self.session = session
        self.default_mode = default_mode
        self.summary: SessionSummary | None = None
        self._owns_session = session is None

    def load(self, loader: Any) -> None:
        loader.add_option(
            "replayproxy_cassette", str, "", "Name of the cassette to record into / replay from."
        )
        loader.add_option(
            "replayproxy_cassette_dir", str, "cassettes", "Directory holding the cassettes."
        )
        loader.add_option(
            "replayproxy_record_mode",
            str,
            self.default_mode.value,
            "When to record and when to replay.",
            choices=[m.value for m in RecordMode],
        )
        loader.add_option(
            "replayproxy_config",
            str,
            "",
            "Configuration file (default: replayproxy.toml or pyproject.toml in the "
            "current directory).",
        )
        loader.add_option(
            "replayproxy_strict",
            bool,
            False,
            "Treat requests beyond a recorded sequence as unmatched instead of repeating.",
        )

    def configure(self, updated: set[str]) -> None:
        if not self._owns_session or not any(k.startswith("replayproxy_") for k in updated):
            return
        opts = ctx.options
        if not opts.replayproxy_cassette:
            raise exceptions.OptionsError(
                "replayproxy: set the cassette name: --set replayproxy_cassette=NAME"
            )
        self._close()
        try:
            settings = load_settings(Path(opts.replayproxy_config) if opts.replayproxy_config
                                     else None)
            self.session = CassetteSession(
                opts.replayproxy_cassette_dir,
                opts.replayproxy_cassette,
                RecordMode.parse(opts.replayproxy_record_mode),
                strict=opts.replayproxy_strict or settings.strict,
                match=settings.match,
                redactor=Redactor(settings.redact, load_key(home_dir())),
            )
        except (ReplayproxyError, ValueError) as e:
            raise exceptions.OptionsError(str(e)) from None

    def running(self) -> None:
        # mitmproxy's default "eager" strategy connects upstream as soon as a client opens
        # an HTTPS tunnel; replay must not, so switch to "lazy"
        replaying = self.session is not None and not self.session.records
        if replaying and ctx.options.connection_strategy != "lazy":
            ctx.options.update(connection_strategy="lazy")

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if self.session is not None and not self.session.records:
            data.server.error = _OFFLINE

    def request(self, flow: http.HTTPFlow) -> None:
        if self.session is None:
            return
        if flow.response is not None and _META not in flow.metadata:
            # answered by an addon before this one (proxy authentication; from mitmproxy
            # 12 on, TlsConfig answers requests for the CRL its certificates name): not
            # the upstream's response, so the response hook must not record it
            flow.metadata[_META] = "answered"
        if flow.response is not None or _META in flow.metadata or flow.error is not None:
            return  # answered, killed or held by something else (auth, a fault)
        try:
            decision = self.session.decide(request_from_flow(flow.request))
            if isinstance(decision, Forward):
                return
            if isinstance(decision, Replay):
                flow.response = _to_flow_response(decision.served.interaction.response)
                flow.metadata[_META] = "replayed"
                flow.metadata["replayproxy_recorded_ttfb"] = decision.served.interaction.ttfb
            else:
                for line in decision.message.splitlines():
                    log.warning("%s", line)
                if "json" in flow.request.headers.get("accept", "").lower():
                    flow.response = http.Response.make(
                        502, decision.as_json_bytes(),
                        {"Content-Type": "application/json", "X-Replayproxy": "unmatched"})
                else:
                    flow.response = _plain(502, decision.message, "unmatched")
                flow.metadata[_META] = "unmatched"
        except Exception as e:  # never let a failure here send the request upstream
            log.exception("replayproxy failed on %s", flow.request.url)
            flow.response = _plain(500, f"replayproxy internal error: {e!r}\n", "error")
            flow.metadata[_META] = "error"

    def response(self, flow: http.HTTPFlow) -> None:
        if self.session is None or _META in flow.metadata or flow.response is None:
            return
        try:
            findings = self.session.record(_interaction_from_flow(flow))
        except Exception:
            # losing a recording silently is worse than stopping: say so loudly
            log.exception("replayproxy could not record %s", flow.request.url)
            flow.kill()
            return
        for finding in findings:
            log.error("secret left after redaction in %s %s: %s: %s (%s)",
                      flow.request.method, flow.request.pretty_url, finding.location,
                      finding.rule, finding.excerpt)

    def done(self) -> None:
        self._close()

    def _close(self) -> None:
        if self.session is not None and self._owns_session:
            self.summary = self.session.close()
            log.info(
                "cassette %s: %d replayed, %d recorded, %d unmatched",
                self.summary.path,
                self.summary.replayed,
                self.summary.recorded,
                len(self.summary.unmatched),
            )
