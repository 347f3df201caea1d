"""The three cloud calls the history needs, over `caliban.cloud_client`.

get(remote_id) -> job dict (with "state"), cancel(remote_id), and
find_by_label(key, value) -> remote id or None, for both backends.
"""

from __future__ import annotations

from caliban.errors import CalibanError


def open_client(target):
    try:
        from caliban import cloud_client  # noqa: F401
    except ImportError as exc:
        raise CalibanError("the cloud client is not available in this build of caliban") from exc
    raise CalibanError("the cloud client is not wired to the job history yet")
