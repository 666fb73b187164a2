"""The SpecOps API: the ``SpeculativeDeployment`` models, CRD generation and conditions.

The pydantic models in :mod:`specops.api.v1alpha1` are the single source of
truth; the CRD YAML in ``crds/`` is generated from them by :mod:`specops.api.crd`.
"""

from specops.api.v1alpha1 import GROUP, KIND, PLURAL, VERSION

__all__ = ["GROUP", "KIND", "PLURAL", "VERSION"]
