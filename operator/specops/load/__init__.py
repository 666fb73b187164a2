"""Load generator for any OpenAI-compatible endpoint (``specops load ...``).

Pure parts: :mod:`.stats` (timings to percentiles), :mod:`.schedule`
(profiles, Poisson arrivals, sweep rates), :mod:`.prompts`, :mod:`.report`
(JSON, Markdown, plots). I/O parts: :mod:`.client` (one streamed request),
:mod:`.runner` (a profile against a live endpoint), :mod:`.virtual` (a
profile in simulated time), and :mod:`.sweep`, which drives either.
"""
