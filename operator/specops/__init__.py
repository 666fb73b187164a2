"""SpecOps: a Kubernetes operator for speculative decoding with vLLM."""

__version__ = "0.1.0"
