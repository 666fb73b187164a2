"""The serving twin: a GPU-free stand-in for one vLLM replica.

``engine`` (pure, deterministic) models vLLM V1's scheduler with speculative
decoding over simulated time; ``metrics`` exports vLLM's Prometheus metrics;
``server`` serves the OpenAI API in real time; ``calibration`` holds the
model to published measurements.
"""
