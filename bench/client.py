"""The recorded traffic: one `requests` session GETting ``/items/0`` .. ``/items/N-1``.

``python bench/client.py BASE_URL N`` sends it through whatever proxy the environment
names (this is what ``replayproxy record -- ...`` runs). With ``--vcr FILE`` it
records the same traffic directly (no proxy) into a VCR.py YAML cassette instead.
"""

from __future__ import annotations

import argparse
import sys

import requests


def fetch_all(base_url: str, count: int) -> None:
    with requests.Session() as s:
        for i in range(count):
            r = s.get(f"{base_url}/items/{i}", timeout=10)
            r.raise_for_status()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("count", type=int)
    ap.add_argument("--vcr", help="record into this VCR.py cassette (YAML) instead")
    args = ap.parse_args()
    if not args.base_url.startswith("http://127.0.0.1:"):
        sys.exit("bench client: loopback only")
    if args.vcr:
        import vcr  # type: ignore[import-untyped]

        with vcr.use_cassette(args.vcr, record_mode="all", serializer="yaml"):
            fetch_all(args.base_url, args.count)
    else:
        fetch_all(args.base_url, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
