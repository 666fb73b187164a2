"""The controller: kopf handlers (thin) around one testable reconcile cycle.

:mod:`reconcile` runs gather -> decide -> apply -> record; :mod:`status`,
:mod:`events` and :mod:`decision` are pure; :mod:`handlers` registers kopf
handlers and :mod:`runner` runs the process (endpoints, leader election, kopf).
"""
