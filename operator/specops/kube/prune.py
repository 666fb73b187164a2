"""Which live children to delete: owned by this resource, no longer rendered (pure).

Both conditions are needed: the managed-by label narrows the listing, the
owner UID makes sure a child of another resource (or a same-named object a
user created) is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from specops.kube.kinds import object_key


def stale_children(
    live: Iterable[dict[str, Any]], keep: Iterable[tuple[str, str, str]], owner_uid: str
) -> list[dict[str, Any]]:
    """Objects in ``live`` owned by ``owner_uid`` whose (apiVersion, kind, name) is not kept."""
    wanted = set(keep)
    stale = []
    for obj in live:
        refs = (obj.get("metadata") or {}).get("ownerReferences") or []
        if not any(ref.get("uid") == owner_uid for ref in refs):
            continue
        if object_key(obj) in wanted:
            continue
        stale.append(obj)
    return sorted(stale, key=object_key)
