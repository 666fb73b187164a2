"""Speculation and autoscaling decisions: pure functions of what was observed.

Nothing here does I/O or imports kopf or a client: the controller gathers
observations (``specops.observe``), calls :func:`specops.policy.decide.decide`
with an injected clock, and applies the returned :class:`Decision`. Keeping it
pure is what lets the same code run in unit tests, property tests and the
virtual-time benchmark.
"""
