"""The pytest plugin's pure parts: cassette names, allowed hosts, the network guard, the
``[pytest]`` configuration table (the plugin itself: tests/integration/test_pytest_plugin.py)."""

from __future__ import annotations

import socket

import pytest

from replayproxy.cassette.store import validate_cassette_name
from replayproxy.config import PytestSettings, parse_settings
from replayproxy.errors import ConfigError
from replayproxy.pytest_plugin import default_cassette_name
from replayproxy.pytest_plugin.network import BlockedConnection, NetworkGuard, parse_hosts


@pytest.mark.parametrize(("nodeid", "name"), [
    ("test_pay.py::test_charge", "test_pay.test_charge"),
    ("tests/api/test_pay.py::TestRefunds::test_full", "tests.api.test_pay.TestRefunds.test_full"),
    ("tests/test_pay.py::test_x[EUR-1/2]", "tests.test_pay.test_x-EUR-1-2"),
    ("tests/test_pay.py::test_x[..]", "tests.test_pay.test_x"),
    ("../up/test_a.py::test_b", "up.test_a.test_b"),
])
def test_default_cassette_names_are_the_module_and_test_made_safe(nodeid, name):
    assert default_cassette_name(nodeid) == name
    validate_cassette_name(name)


def test_a_very_long_test_name_keeps_a_unique_safe_name():
    a = default_cassette_name("t.py::test_" + "a" * 300 + "[1]")
    b = default_cassette_name("t.py::test_" + "a" * 300 + "[2]")
    assert a != b and len(a) <= 200
    validate_cassette_name(a)


def test_allowed_hosts_parse():
    assert parse_hosts(["localhost, db:5432", "[::1]:8080", "[::1]"]) == [
        ("localhost", None), ("db", 5432), ("::1", 8080), ("::1", None)]
    for bad in ("db:http", "db:0", ":80"):
        with pytest.raises(ValueError, match="allowed host"):
            parse_hosts([bad])


@pytest.fixture
def listener():
    """A listening port (the kernel completes connections into its backlog)."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as server:
        yield server.getsockname()[1]


def test_the_guard_blocks_and_names_the_host_until_removed(listener):
    guard = NetworkGuard([("127.0.0.1", listener + 1 if listener < 65535 else 1)], "replay!")
    guard.install()
    try:
        with pytest.raises(BlockedConnection, match=rf"to localhost:{listener}: replay!"):
            socket.create_connection(("localhost", listener), timeout=5)
        with socket.socket() as s, pytest.raises(BlockedConnection, match="127.0.0.1"):
            s.connect(("127.0.0.1", listener))
        with socket.socket() as s, pytest.raises(BlockedConnection):  # connect_ex too
            s.connect_ex(("127.0.0.1", listener))
    finally:
        guard.uninstall()
    assert guard.blocked == [f"localhost:{listener}", f"127.0.0.1:{listener}"]
    socket.create_connection(("127.0.0.1", listener), timeout=5).close()  # free again


def test_the_guard_lets_allowed_hosts_and_unix_sockets_through(listener, tmp_path):
    guard = NetworkGuard([("localhost", listener)], "replay!")
    guard.install()
    try:
        socket.create_connection(("127.0.0.1", listener), timeout=5).close()
        path = str(tmp_path / "s")
        with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
            server.bind(path)
            server.listen()
            client.connect(path)
    finally:
        guard.uninstall()
    assert guard.blocked == []


def test_the_pytest_table_is_checked():
    settings = parse_settings({"pytest": {"record_mode": "once", "upstream_ca": "ca.pem",
                                          "allowed_hosts": ["db:5432"], "ca_dir": ".ca",
                                          "upstream_insecure": True,
                                          "upstream_proxy": "none"}})
    assert settings.pytest == PytestSettings("once", ("ca.pem",), True, "none", ".ca",
                                             ("db:5432",))
    for table, message in [
        ({"record_mode": "sometimes"}, "record_mode: unknown record mode 'sometimes'"),
        ({"mode": "once"}, "mode: unknown setting; allowed: allowed_hosts, ca_dir"),
        ({"upstream_ca": [1]}, "upstream_ca: expected a PEM file, or a list of them"),
        ({"upstream_insecure": "yes"}, "upstream_insecure: expected true or false"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_settings({"pytest": table})
