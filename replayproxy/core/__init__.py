"""The pure core of replayproxy: cassette model, storage, matching, sessions.

Nothing in this package imports mitmproxy; it is tested without sockets.
"""
