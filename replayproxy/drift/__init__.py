"""The drift check: re-send recorded requests to the live API and report what changed.

``plan`` (what to send, and the results), ``compare`` (recorded against live response)
giving ``findings``, ``live`` (the calls, with httpx), ``clean`` (live answers, messages
and URLs redacted before anything compares, stores or shows them), ``history`` (every
run in SQLite) and ``report`` (terminal, JUnit, Markdown, HTML, JSON).
"""
