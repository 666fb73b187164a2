"""The one-command demo: ``make demo`` / ``python -m specops.demo up|down``.

It assembles the twin from the real parts (local control plane, Prometheus,
pod runner, the Helm chart with its operator pod run under its own
ServiceAccount token), applies the Qwen3-8B example, drives a load that
rises to saturation and falls again, and writes a report of what the
operator did and why. See ``docs/demo.md``.
"""
