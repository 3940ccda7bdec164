"""The per-request decision and the run's outcome, engine-neutral.

- ``session``: ``CassetteSession``, one cassette in use by a run (replay, record, the
  summary);
- ``pipeline``: ``Pipeline.decide(request, now)``, a request and the time in, a plan out
  (a fault's own answer, a recorded response, forward and record, unmatched);
- ``verdict``: the exit rules of a run, for every front end;
- ``requestlog``: what clients sent during a run, filtered and verified.
"""
