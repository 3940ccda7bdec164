"""Each client family records and replays through nothing but the child's environment.

Every test runs a real client program (unchanged, knowing nothing of replayproxy) in a
subprocess with ``ProxyRun.environment()`` (what `replayproxy record/replay` give their
command), against a local HTTPS upstream with its own CA: once recording, once replaying
with the upstream connection count unchanged. A client whose toolchain is missing is
skipped, naming it. docs/clients.md is the table these tests back.

Go, Ruby and Java never use a proxy for loopback addresses, so they reach the upstream
by the name ``sandbox.test``: the client does not resolve it (Go and Java leave that to
the proxy; Ruby's own lookup fails, and then it uses the proxy), and while recording an
addon of this test, given through ``ProxyRun(addons=...)``, connects the proxy to
127.0.0.1 for that name, as DNS or /etc/hosts would for a real sandbox. Replay resolves
nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from replayproxy.config import Settings
from replayproxy.decision.session import SessionSummary
from replayproxy.engines.mitm.ca import CA
from replayproxy.model import RecordMode
from replayproxy.run import ProxyRun
from tests.conftest import UpstreamCA
from tests.integration.support import (
    JSON_BODY,
    QuietHandler,
    Upstream,
    base_env,
    cli,
    offline,
)

pytestmark = pytest.mark.slow

CLIENTS = Path(__file__).parent / "clients"
SANDBOX = "sandbox.test"


# -- the upstream: an API, a Python package index, an npm registry ---------------------


def _wheel() -> bytes:
    """A minimal valid wheel of ``tinypkg`` 1.0."""
    files = {
        "tinypkg/__init__.py": b"",
        "tinypkg-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        record = ""
        for name, data in files.items():
            z.writestr(zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data)
            record += f"{name},,\n"
        z.writestr(zipfile.ZipInfo("tinypkg-1.0.dist-info/RECORD", (2026, 1, 1, 0, 0, 0)),
                   record + "tinypkg-1.0.dist-info/RECORD,,\n")
    return buf.getvalue()


WHEEL = _wheel()
WHEEL_NAME = "tinypkg-1.0-py3-none-any.whl"


def _tarball() -> bytes:
    """A minimal npm package ``tinypkg`` 1.0.0 (``package/package.json``), as a .tgz."""
    data = b'{"name": "tinypkg", "version": "1.0.0", "main": "index.js"}\n'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in (("package/package.json", data),
                              ("package/index.js", b"module.exports = 42;\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), 1_767_225_600, 0o644
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


TARBALL = _tarball()


class _Handler(QuietHandler):
    def do_GET(self) -> None:
        self.server.count_request("GET", self.path)
        base = f"https://{self.headers['Host']}"
        if self.path == "/json":
            self._send(JSON_BODY, "application/json")
        elif self.path == "/simple/tinypkg/":  # PEP 503
            sha = hashlib.sha256(WHEEL).hexdigest()
            self._send(f'<html><body><a href="{base}/files/{WHEEL_NAME}#sha256={sha}">'
                       f"{WHEEL_NAME}</a></body></html>".encode(), "text/html")
        elif self.path == f"/files/{WHEEL_NAME}":
            self._send(WHEEL, "application/octet-stream")
        elif self.path == "/tinypkg":  # an npm packument
            self._send(json.dumps({
                "name": "tinypkg", "dist-tags": {"latest": "1.0.0"},
                "versions": {"1.0.0": {"name": "tinypkg", "version": "1.0.0", "dist": {
                    "tarball": f"{base}/tinypkg-1.0.0.tgz",
                    "shasum": hashlib.sha1(TARBALL).hexdigest(),
                    "integrity": "sha512-" + base64.b64encode(
                        hashlib.sha512(TARBALL).digest()).decode()}}},
            }).encode(), "application/json")
        elif self.path == "/tinypkg-1.0.0.tgz":
            self._send(TARBALL, "application/octet-stream")
        else:
            self._send(b"not found", "text/plain", 404)

    def _send(self, body: bytes, kind: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def sandbox_context(upstream_ca: UpstreamCA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    upstream_ca.ca.issue_cert("127.0.0.1", "localhost", SANDBOX).configure_cert(context)
    return context


@pytest.fixture
def sandbox(sandbox_context: ssl.SSLContext) -> Iterator[Upstream]:
    server = Upstream(sandbox_context, _Handler)
    try:
        yield server
    finally:
        server.stop()


class ResolveSandbox:
    """A mitmproxy addon: the proxy reaches ``sandbox.test`` at 127.0.0.1 (test DNS)."""

    def server_connect(self, data: Any) -> None:
        host, port = data.server.address
        if host == SANDBOX:
            data.server.address = ("127.0.0.1", port)


# -- running a client under the proxy --------------------------------------------------


class Runner:
    def __init__(self, tmp_path: Path, proxy_ca: CA, upstream_ca: UpstreamCA,
                 upstream: Upstream, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.cassette_dir = tmp_path / "cassettes"
        self.tmp_path = tmp_path
        self.proxy_ca, self.upstream_ca, self.upstream = proxy_ca, upstream_ca, upstream

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.upstream.scheme}://{host}:{self.upstream.port}{path}"

    def run(self, cmd: Sequence[str | os.PathLike[str]], mode: RecordMode,
            env: Mapping[str, str] | None = None, reverse: str | None = None
            ) -> tuple[subprocess.CompletedProcess[bytes], SessionSummary]:
        """Run ``cmd`` under a proxy; ``{reverse}`` in it: the reverse base URL."""
        run = ProxyRun("client", mode, cassette_dir=self.cassette_dir, settings=Settings(),
                       upstream_ca=self.upstream_ca.pem, ca_dir=self.proxy_ca.directory,
                       control=False, addons=[ResolveSandbox()], reverse=reverse,
                       upstream_proxy="none")  # whatever HTTPS_PROXY this machine has
        with run:
            child_env = base_env(**run.environment())
            child_env.update(env or {})
            if reverse:
                cmd = [str(c).replace("{reverse}", run.reverse_url or "") for c in cmd]
            proc = subprocess.run([str(c) for c in cmd], env=child_env, capture_output=True,
                                  timeout=180, check=False, cwd=self.tmp_path)
        assert run.summary is not None
        errors = [f"{r.name}: {r.getMessage()}" for r in self.caplog.records
                  if r.levelno >= logging.ERROR
                  and r.name.split(".")[0] in ("mitmproxy", "asyncio", "replayproxy")]
        assert not errors, "the proxy logged errors:\n" + "\n".join(errors)
        return proc, run.summary

    def record_and_replay(self, cmd: Sequence[str | os.PathLike[str]],
                          env: Mapping[str, str] | None = None,
                          env_replay: Mapping[str, str] | None = None, *,
                          same_output: bool = True, reverse: str | None = None) -> bytes:
        """Record, then replay offline; both runs succeed with the same output."""
        rec, recorded = self.run(cmd, RecordMode.ALL, env, reverse)
        assert rec.returncode == 0, rec.stderr.decode(errors="replace")
        assert recorded.recorded >= 1, f"nothing went through the proxy: {rec.stderr!r}"
        assert self.upstream.total_requests >= recorded.recorded
        with offline(self.upstream):
            rep, replayed = self.run(cmd, RecordMode.NONE, env_replay or env, reverse)
        assert rep.returncode == 0, rep.stderr.decode(errors="replace")
        assert (replayed.replayed, replayed.unmatched) == (recorded.recorded, [])
        if same_output:
            assert rep.stdout == rec.stdout
        return rec.stdout


@pytest.fixture
def runner(tmp_path: Path, proxy_ca: CA, upstream_ca: UpstreamCA, sandbox: Upstream,
           caplog: pytest.LogCaptureFixture) -> Runner:
    return Runner(tmp_path, proxy_ca, upstream_ca, sandbox, caplog)


def need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")


# -- curl, wget ------------------------------------------------------------------------


def test_curl(runner: Runner) -> None:
    need("curl")
    assert runner.record_and_replay(["curl", "-sS", runner.url("/json")]) == JSON_BODY


def test_wget_through_the_generated_wgetrc(runner: Runner) -> None:
    """wget's GnuTLS build ignores SSL_CERT_FILE: WGETRC names a wgetrc that names the
    bundle (tests/unit/test_environment.py: the user's own settings are kept in it)."""
    need("wget")
    body = runner.record_and_replay(["wget", "-q", "-O", "-", runner.url("/json")])
    assert body == JSON_BODY


# -- Python ----------------------------------------------------------------------------

PYTHON_CLIENTS = {
    "urllib": "import urllib.request as u; out(u.urlopen(url).read())",
    "requests": "import requests; out(requests.get(url).content)",
    "httpx": "import httpx; out(httpx.get(url).content)",
    "httpx-async": "import asyncio, httpx\n"
                   "async def main():\n"
                   "    async with httpx.AsyncClient() as c:\n"
                   "        out((await c.get(url)).content)\n"
                   "asyncio.run(main())",
}


def test_aiohttp_with_trust_env(runner: Runner) -> None:
    """aiohttp ignores HTTPS_PROXY unless the session is made with trust_env=True (no
    variable can change that): with it, it records and replays like the others."""
    pytest.importorskip("aiohttp")
    code = ("import asyncio, sys, aiohttp\n"
            "async def main():\n"
            "    async with aiohttp.ClientSession(trust_env=True) as s:\n"
            "        async with s.get(sys.argv[1]) as r:\n"
            "            sys.stdout.buffer.write(await r.read())\n"
            "asyncio.run(main())")
    assert runner.record_and_replay([sys.executable, "-c", code, runner.url("/json")]) \
        == JSON_BODY


@pytest.mark.parametrize("client", list(PYTHON_CLIENTS))
def test_python(runner: Runner, client: str) -> None:
    code = "import sys\nurl = sys.argv[1]\nout = sys.stdout.buffer.write\n" + PYTHON_CLIENTS[client]
    assert runner.record_and_replay([sys.executable, "-c", code, runner.url("/json")]) == JSON_BODY


def test_pip_download_despite_a_cert_in_pip_conf(runner: Runner, tmp_path: Path) -> None:
    """A ``cert`` in the user's pip.conf would beat REQUESTS_CA_BUNDLE; PIP_CERT wins."""
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\ncert = /nonexistent/ca.pem\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
           "--disable-pip-version-check", "--index-url", runner.url("/simple/"), "tinypkg"]
    env = {"PIP_CONFIG_FILE": str(conf), "PIP_DEST": str(tmp_path / "record")}
    runner.record_and_replay(cmd, env, {**env, "PIP_DEST": str(tmp_path / "replay")},
                             same_output=False)  # it names the directory
    for run in ("record", "replay"):
        assert (tmp_path / run / WHEEL_NAME).read_bytes() == WHEEL


# -- Node ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["agent", "fetch"])
def test_node(runner: Runner, mode: str) -> None:
    """Node 20 ignores HTTPS_PROXY: the preload carries an SDK's own keep-alive
    https.Agent and the global fetch through the proxy."""
    need("node")
    cmd = ["node", CLIENTS / "node_client.js", mode, runner.url("/json")]
    assert runner.record_and_replay(cmd) == JSON_BODY


@pytest.mark.parametrize("mode", ["agent", "fetch", "absolute"])
def test_node_plain_http(runner: Runner, mode: str) -> None:
    """Plain http: through a tunnel too; a request sent to the proxy itself (as axios
    does with HTTP_PROXY) is left alone."""
    need("node")
    plain = Upstream(None)
    try:
        runner.upstream = plain
        cmd = ["node", CLIENTS / "node_client.js", mode, plain.url("/json")]
        assert json.loads(runner.record_and_replay(cmd)) == json.loads(JSON_BODY)
    finally:
        plain.stop()


@pytest.mark.parametrize("mode", ["agent", "fetch"])
def test_node_to_a_reverse_base_url(runner: Runner, mode: str) -> None:
    """With --reverse, the preload's tunnel to the local base URL reaches it too."""
    need("node")
    cmd = ["node", CLIENTS / "node_client.js", mode, "{reverse}/json"]
    assert runner.record_and_replay(cmd, reverse=runner.upstream.base_url) == JSON_BODY


def test_node_preload_is_harmless_and_honours_no_proxy(runner: Runner) -> None:
    """A program that makes no request sees nothing; a NO_PROXY host goes direct."""
    need("node")
    quiet, _ = runner.run(["node", "-e", "console.log(typeof fetch)"], RecordMode.ALL)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"function\n", b"")
    for mode in ("agent", "fetch"):
        direct, summary = runner.run(
            ["node", CLIENTS / "node_client.js", mode, runner.url("/json")], RecordMode.ALL,
            env={"NO_PROXY": "127.0.0.1", "NODE_EXTRA_CA_CERTS": str(runner.upstream_ca.pem)})
        assert (direct.returncode, direct.stdout) == (0, JSON_BODY), direct.stderr
        assert summary.recorded == 0
    assert runner.upstream.total_requests == 2


def test_npm_view_despite_a_cafile_in_npmrc(runner: Runner, tmp_path: Path) -> None:
    """A ``cafile`` in the user's .npmrc would beat NODE_EXTRA_CA_CERTS.

    The registry has a name: npm's proxy agent checks the certificate of an IP address
    registry against "localhost" (it drops the host when it starts TLS in the tunnel)."""
    need("node", "npm")
    npmrc = tmp_path / "npmrc"
    npmrc.write_text("cafile=/etc/ssl/certs/ca-certificates.crt\n")
    cmd = ["npm", "view", "tinypkg", "version", "--registry", runner.url("/", "localhost")]
    env = {"npm_config_userconfig": str(npmrc), "npm_config_update_notifier": "false",
           "npm_config_fetch_retries": "0", "npm_config_cache": str(tmp_path / "npm-record")}
    replay_env = {**env, "npm_config_cache": str(tmp_path / "npm-replay")}
    assert runner.record_and_replay(cmd, env, replay_env).strip() == b"1.0.0"


def test_pnpm_add_despite_a_cafile_in_npmrc(runner: Runner, tmp_path: Path) -> None:
    """pnpm reads the same npm_config_* variables as npm: it fetches the packument and
    the tarball through the proxy, trusting the bundle, whatever .npmrc says."""
    need("node", "pnpm")
    npmrc = tmp_path / "npmrc"
    npmrc.write_text("cafile=/etc/ssl/certs/ca-certificates.crt\n")

    def env_for(run: str) -> dict[str, str]:
        project = tmp_path / run
        project.mkdir()
        (project / "package.json").write_text('{"name": "app", "private": true}\n')
        return {"npm_config_userconfig": str(npmrc), "npm_config_update_notifier": "false",
                "npm_config_fetch_retries": "0",
                "npm_config_store_dir": str(tmp_path / f"store-{run}"),
                "npm_config_cache_dir": str(tmp_path / f"cache-{run}"),
                "HOME": str(tmp_path / f"home-{run}"), "PROJECT": str(project)}

    cmd = ["sh", "-c", f"cd \"$PROJECT\" && pnpm add tinypkg --reporter=silent "
                       f"--registry {runner.url('/', 'localhost')} && "
                       "node -e 'console.log(require(\"tinypkg\"))'"]
    assert runner.record_and_replay(cmd, env_for("record"), env_for("replay")).strip() \
        == b"42"


def _need_yarn_berry() -> None:
    """Skip, saying why, unless ``yarn`` is Yarn 2 or later (Berry)."""
    yarn = shutil.which("yarn")
    if yarn is None:
        pytest.skip("Yarn 2+ not installed (.ci/run installs it with "
                    "`npm install -g @yarnpkg/cli-dist`)")
    version = subprocess.run([yarn, "--version"], capture_output=True, text=True, timeout=60,
                             check=False, env=base_env(), cwd=Path(yarn).parent).stdout.strip()
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 2:
        pytest.skip(f"yarn {version or '?'} is Yarn 1 (classic); this row is Yarn 2+")


def test_yarn_berry_npm_info(runner: Runner, tmp_path: Path) -> None:
    """Yarn 2+ reads neither HTTPS_PROXY nor .npmrc: it gets YARN_HTTPS_PROXY and trusts
    the CA through NODE_EXTRA_CA_CERTS. The registry has a name, as for npm."""
    _need_yarn_berry()
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text('{"name": "app", "private": true}\n')
    (project / "yarn.lock").write_text("")
    cmd = ["sh", "-c", f"cd {project} && yarn npm info tinypkg --fields version --json"]
    env = {"YARN_NPM_REGISTRY_SERVER": runner.url("", "localhost"),
           "YARN_ENABLE_TELEMETRY": "0", "YARN_ENABLE_GLOBAL_CACHE": "0",
           "YARN_CACHE_FOLDER": str(tmp_path / "yarn-cache"), "HOME": str(tmp_path / "home"),
           "YARN_HTTP_RETRY": "0"}
    out = runner.record_and_replay(cmd, env)
    assert json.loads(out)["version"] == "1.0.0"


# -- apt -------------------------------------------------------------------------------


def _deb_repository(work: Path) -> dict[str, bytes]:
    """A flat apt repository (``deb [trusted=yes] URL ./``) holding ``tinypkg`` 1.0:
    path -> bytes of Release, Packages and the .deb (built with dpkg-deb)."""
    package = work / "tinypkg"
    (package / "DEBIAN").mkdir(parents=True)
    control = ("Package: tinypkg\nVersion: 1.0\nArchitecture: all\n"
               "Maintainer: test <test@example.com>\nDescription: tiny\n")
    (package / "DEBIAN" / "control").write_text(control)
    deb_path = work / "tinypkg_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", package, deb_path],
                   check=True, capture_output=True, timeout=60)
    deb = deb_path.read_bytes()
    packages = (control.replace("Description:", f"Filename: ./{deb_path.name}\n"
                                f"Size: {len(deb)}\nSHA256: {hashlib.sha256(deb).hexdigest()}"
                                "\nDescription:") + "\n").encode()
    release = ("Origin: test\nLabel: test\nSuite: ./\nCodename: test\n"
               "Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n"
               f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n").encode()
    return {"/./Release": release, "/./Packages": packages, f"/./{deb_path.name}": deb}


class _AptRepo(QuietHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        self.server.count_request("GET", self.path)
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_apt_get_update_and_download(runner: Runner, tmp_path: Path,
                                     sandbox_context: ssl.SSLContext, scheme: str) -> None:
    """apt reads http_proxy/https_proxy. Over HTTPS it trusts only its own CA setting
    (GnuTLS, the system store), so the command passes ``Acquire::https::CAInfo`` the
    bundle replayproxy gives in ``SSL_CERT_FILE``. A throwaway apt root in a temporary
    directory: no root needed beyond what apt-get itself wants."""
    need("apt-get", "dpkg-deb")
    _AptRepo.files = _deb_repository(tmp_path / "build")
    repo = Upstream(sandbox_context if scheme == "https" else None, _AptRepo)
    try:
        runner.upstream = repo
        script = (
            'set -e; R="$APT_ROOT"; mkdir -p "$R/lists/partial" "$R/cache/archives/partial" '
            '"$R/parts" "$R/out"; : > "$R/status"\n'
            f'echo "deb [trusted=yes] {runner.url("/", SANDBOX)} ./" > "$R/sources.list"\n'
            'set -- -o Dir::Etc::sourcelist="$R/sources.list" -o Dir::Etc::sourceparts="$R/parts"'
            ' -o Dir::Etc::preferencesparts="$R/parts" -o Dir::State="$R"'
            ' -o Dir::State::status="$R/status" -o Dir::Cache="$R/cache"'
            ' -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)"'
            ' -o Acquire::https::CAInfo="$SSL_CERT_FILE"\n'
            'apt-get -qq "$@" update\n'
            'cd "$R/out" && apt-get -qq "$@" download tinypkg\n'
            'sha256sum tinypkg_1.0_all.deb | cut -d" " -f1\n')
        env = {"APT_ROOT": str(tmp_path / "record")}
        out = runner.record_and_replay(["sh", "-c", script], env,
                                       {"APT_ROOT": str(tmp_path / "replay")})
        deb = _AptRepo.files["/./tinypkg_1.0_all.deb"]
        assert out.split()[-1].decode() == hashlib.sha256(deb).hexdigest()
        for run in ("record", "replay"):
            assert (tmp_path / run / "out" / "tinypkg_1.0_all.deb").read_bytes() == deb
    finally:
        repo.stop()


# -- Java ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("java", "javac", "keytool")
    out = tmp_path_factory.mktemp("java")
    subprocess.run(["javac", "-d", out, CLIENTS / "JavaClient.java"], check=True, timeout=120,
                   env=base_env())
    return out


@pytest.mark.parametrize(("api", "host"), [("httpclient", "127.0.0.1"),
                                           ("urlconnection", "127.0.0.1"),
                                           ("httpclient", SANDBOX)])
def test_java(runner: Runner, java_classes: Path, api: str, host: str) -> None:
    """JAVA_TOOL_OPTIONS: proxy properties, an empty http.nonProxyHosts (Java's default
    skips the proxy for localhost and 127.*) and the trust store beside the CA."""
    cmd = ["java", "-cp", java_classes, "JavaClient", api, runner.url("/json", host)]
    assert runner.record_and_replay(cmd) == JSON_BODY


# -- Go, Ruby ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def go_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need("go")
    out = tmp_path_factory.mktemp("go")
    env = base_env(GOCACHE=str(out / "cache"), GOPATH=str(out / "path"), GO111MODULE="off",
                   GOFLAGS="")
    subprocess.run(["go", "build", "-o", out / "client", CLIENTS / "go_client.go"],
                   check=True, timeout=300, env=env, capture_output=True)
    return out / "client"


def test_go(runner: Runner, go_binary: Path) -> None:
    """Go skips the proxy for loopback hosts, so the sandbox has a name."""
    assert runner.record_and_replay([go_binary, runner.url("/json", SANDBOX)]) == JSON_BODY


def test_ruby(runner: Runner) -> None:
    """Ruby skips the proxy for names that resolve to loopback; this one does not resolve."""
    need("ruby")
    cmd = ["ruby", "-rnet/http", "-e", "print Net::HTTP.get(URI(ARGV[0]))",
           runner.url("/json", SANDBOX)]
    assert runner.record_and_replay(cmd) == JSON_BODY


# -- the same through the command line -------------------------------------------------


def test_record_and_replay_commands_give_the_same_environment(
        runner: Runner, cli_env: dict[str, str], tmp_path: Path) -> None:
    """`replayproxy record/replay -- CMD` (what users run): wget and Node's fetch."""
    need("wget", "node")
    url = runner.url("/json")
    script = f"wget -q -O - {url} && node {CLIENTS / 'node_client.js'} fetch {url}"
    common = ["-c", "cli", "--cassette-dir", tmp_path / "cli-cassettes", "--upstream-ca",
              runner.upstream_ca.pem, "--", "sh", "-c", script]
    rec = cli("record", *common, env=cli_env, cwd=tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.encode() == JSON_BODY * 2
    assert "0 replayed, 2 recorded" in rec.stderr
    with offline(runner.upstream):
        rep = cli("replay", *common, env=cli_env, cwd=tmp_path)
    assert rep.returncode == 0, rep.stderr
    assert rep.stdout == rec.stdout
    assert "2 replayed" in rep.stderr
