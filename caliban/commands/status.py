"""`caliban status`: groups -> experiments -> latest jobs, refreshed from where they run."""

from __future__ import annotations

import json
import shlex
import sys
import time

# Without --xgroup, only the user's most recent groups are shown.
RECENT_GROUPS = 5
# --watch: seconds between refreshes. A refresh of a cloud group is one list
# request per 100 jobs, far inside the API's read quota at this pace.
WATCH_SECONDS = 10.0
_CLEAR_SCREEN = "\x1b[H\x1b[2J"
STATUS_ORDER = {s: i for i, s in enumerate(
    ("RUNNING", "SUBMITTED", "PENDING", "STOPPING", "SUCCEEDED", "FAILED", "PREEMPTED", "STOPPED"))}


def age(stamp: float, now: float | None = None) -> str:
    seconds = max(0, int((time.time() if now is None else now) - stamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def short_id(job) -> str:
    """What gcloud / docker take: `projects/P/locations/R/customJobs/123` -> `123`, a
    container id -> its 12-character short form. `--format json` has the full ids."""
    if not job.remote_id:
        return "-"
    if not job.is_cloud:
        return job.remote_id[:12]
    from caliban.backends import short_job_id

    return short_job_id(job.remote_id)


def status_cell(job) -> str:
    if job.status == "PENDING":
        return "PENDING (maybe sent)" if job.maybe_sent else "PENDING (not sent)"
    if job.exit_code not in (None, 0):
        return f"{job.status} ({job.exit_code})"
    return job.status


def collect(store, remotes, xgroup: str | None, max_jobs: int | None, user: str) -> dict:
    """The groups to show, each with its latest jobs (refreshed), newest experiments last.

    `max_jobs`: only the newest that many experiments of each group (the
    table's display limit); None for all of them (`--format json`, which
    scripts read whole).
    """
    from caliban.workflows.refresh import refresh

    if xgroup is not None:
        groups = [store.existing_group(xgroup)]
        hidden = 0
    else:
        groups = store.groups(user=user)
        hidden = max(0, len(groups) - RECENT_GROUPS)
        groups = groups[hidden:]
    out = []
    for group in groups:
        shown = store.jobs(group=group.name, latest_only=True, limit=max_jobs)
        shown = refresh(store, remotes, shown)
        experiments = store.experiment_count(group.id)
        out.append(
            {
                "group": group,
                "experiments": experiments,
                "not_shown": experiments - len(shown),
                "max_jobs": max_jobs,
                "counts": store.status_counts(group.name),
                "busy": store.group_busy(group),
                "rows": [(store.experiment(j.experiment_id), j) for j in shown],
            }
        )
    return {"groups": out, "older_groups": hidden}


def as_json(data: dict) -> dict:
    from caliban.history import iso_time

    return {
        "groups": [
            {
                "name": g["group"].name,
                "user": g["group"].user,
                "created": iso_time(g["group"].created),
                "experiments": g["experiments"],
                "not_shown": g["not_shown"],
                "status_counts": g["counts"],
                "being_submitted": g["busy"],
                "jobs": [
                    {"experiment": {"id": e.id, "args": e.args, "flags": e.flags}, **job.as_json()}
                    for e, job in g["rows"]
                ],
            }
            for g in data["groups"]
        ],
        "older_groups": data["older_groups"],
    }


def as_text(data: dict, now: float | None = None) -> str:
    lines = []
    if not data["groups"]:
        return "No jobs recorded yet. `caliban run` and `caliban cloud` record theirs here."
    for g in data["groups"]:
        group = g["group"]
        counts = ", ".join(
            f"{n} {status}" for status, n in sorted(g["counts"].items(), key=lambda kv: STATUS_ORDER.get(kv[0], 99))
        )
        lines.append(
            f"xgroup {group.name}  (user {group.user}, {g['experiments']} experiment"
            f"{'s' if g['experiments'] != 1 else ''}, created {age(group.created, now)} ago)"
            + (f": {counts}" if counts else "")
        )
        header = ("EXP", "JOB", "STATUS", "AGE", "BACKEND", "REMOTE ID", "ARGS")
        rows = [
            (
                str(e.id),
                str(j.id),
                status_cell(j),
                age(j.created, now),
                j.backend,
                short_id(j),
                " ".join(shlex.quote(a) for a in e.args) or "-",
            )
            for e, j in g["rows"]
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
        for row in [header, *rows]:
            cells = [c.ljust(w) for c, w in zip(row, widths)] + [row[-1]]
            lines.append("  " + "  ".join(cells).rstrip())
        if not rows:
            lines.append("  (no jobs)")
        pending = g["counts"].get("PENDING", 0)
        if pending and g.get("busy"):
            lines.append(f"  {pending} job(s) PENDING: a caliban process is still submitting them")
        elif pending:
            lines.append(
                f"  {pending} job(s) PENDING: the sweep was interrupted; "
                f"`caliban resubmit --xgroup {group.name}` finishes it without duplicates"
            )
        if g["not_shown"] > 0:
            n = g["not_shown"]
            lines.append(f"  ... {n} more experiment{'s' if n != 1 else ''} not shown "
                         f"(--max_jobs {g['max_jobs']}; --format json lists all)")
        for e, j in g["rows"]:
            if j.status == "FAILED" and j.error:
                lines.append(f"  job {j.id}: {j.error.splitlines()[0][:200]}")
        lines.append("")
    if data["older_groups"]:
        lines.append(
            f"{data['older_groups']} older group(s) not shown; pass --xgroup NAME to see one."
        )
    return "\n".join(lines).rstrip()


def still_moving(data: dict) -> bool:
    """Whether a job in view can still change: sent and not finished, or
    PENDING in a group a caliban process is still working on. A PENDING job of
    an interrupted sweep waits for `resubmit`, not for time."""
    from caliban.history import states

    return any(
        job.status in (states.SUBMITTED, states.RUNNING, states.STOPPING)
        or (job.status == states.PENDING and g["busy"])
        for g in data["groups"]
        for _, job in g["rows"]
    )


def _snapshot(data: dict) -> list:
    return [(job.id, job.status) for g in data["groups"] for _, job in g["rows"]]


def main(args) -> int:
    from caliban import history, options
    from caliban.errors import UsageError
    from caliban.workflows.refresh import Remotes

    watch = bool(getattr(args, "watch", False))
    interval = getattr(args, "interval", None)
    if interval is not None and not watch:
        raise UsageError(f"--interval {interval:g} sets the pace of --watch; add --watch, or drop --interval")
    remotes = Remotes(options.recorded_jobs(args))
    as_json_output = getattr(args, "format", "text") == "json"
    terminal = sys.stdout.isatty()
    shown = None
    with history.open_store() as store:
        while True:
            data = collect(
                store,
                remotes,
                getattr(args, "xgroup", None),
                None if as_json_output else getattr(args, "max_jobs", None) or 8,
                history.current_user(),
            )
            moving = watch and still_moving(data)
            if not moving:
                break
            if terminal and not as_json_output:
                sys.stdout.write(f"{_CLEAR_SCREEN}{as_text(data)}\n\n"
                                 f"(refreshed {time.strftime('%H:%M:%S')}, every {interval or WATCH_SECONDS:g} s "
                                 "until every job shown has finished; Ctrl-C to stop watching)\n")
                sys.stdout.flush()
            elif not as_json_output and _snapshot(data) != shown:  # a log or a pipe: each change once
                print(as_text(data) + "\n", flush=True)
                shown = _snapshot(data)
            time.sleep(interval or WATCH_SECONDS)
        if as_json_output:
            json.dump(as_json(data), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print((_CLEAR_SCREEN if watch and terminal else "") + as_text(data))
    return 0
