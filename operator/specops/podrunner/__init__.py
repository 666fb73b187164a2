"""Makes the local cluster's SpecOps pods serve: one simulator per pod, a door per Service.

:mod:`.plan` (pure) maps pods, nodes and Services to replicas and front
doors; :mod:`.processes` runs simulators; :mod:`.frontdoor` and
:mod:`.balance` are the loopback load balancer; :mod:`.runner` is the loop.
Run it with ``python -m specops.podrunner`` or ``specops podrunner``.
"""
