"""Cassettes: the file format by version (``format``), the files on disk (``store``),
the recording journals (``journal``), and their text view (``view``)."""
