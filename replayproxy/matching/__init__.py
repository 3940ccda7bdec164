"""Matching: which recorded interaction answers an incoming request.

- ``rules``: the matchers and per-route rules (``MatchRule``, ``MatchConfig``), and the
  normalised views of a request they compare;
- ``index``: ``ReplayIndex``, the lookup by exact fields then match key, with recorded
  sequences served in order;
- ``diagnostics``: for a request that matches nothing, the closest recordings and how
  they differ, field by field.
"""
