"""Rebuilding a recorded image for `caliban resubmit`, and pushing it.

The build arguments recorded by `caliban cloud` (see `cloud_build_args`) are
enough to build the same image again from the project directory; the push
goes where the recorded image went unless `--image_repo` says otherwise.
"""

from __future__ import annotations

from caliban.errors import CalibanError


def cloud_build_args(args, project_dir: str, image_repo: str | None = None) -> dict:
    """What `caliban cloud` records so `resubmit` can rebuild the image."""
    return {
        "project_dir": project_dir,
        "target": args.module,
        "gpu": not getattr(args, "nogpu", False),
        "extras": list(getattr(args, "extras", None) or []),
        "dirs": list(getattr(args, "dir", None) or []),
        "no_cache": bool(getattr(args, "no_cache", False)),
        "image_tag": getattr(args, "image_tag", None) or None,
        "image_repo": image_repo or getattr(args, "image_repo", None) or None,
    }


def rebuild_and_push(
    build_args: dict,
    *,
    image_repo: str | None,
    project: str | None,
    region: str | None,
    cloud_key: str | None,
    recorded_uri: str | None,
) -> str:
    raise CalibanError("rebuilding images for resubmit needs caliban.image_push, not available yet")
