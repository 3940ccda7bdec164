"""Redaction: no secret reaches a cassette.

- ``redactor``: replaces secrets with stable placeholders (``<redacted:RULE:HASH>``)
  in a request and its response, before anything is written or matched;
- ``secrets``: the secret header and field names and the credential shapes;
- ``scan``: the scanner that proves a cassette (or a VCR.py / HAR file) holds none.
"""
