"""`caliban resubmit`: finish an interrupted sweep, rerun failed and stopped jobs.

Cloud jobs: the group's latest job per experiment is refreshed; what to
send is chosen by the table below; the image is rebuilt from the recorded
`BuildSpec` and pushed (an unchanged project gives the same content tag,
so nothing is pushed again; `--image_tag` sweeps reuse their image); every
new attempt is written as PENDING; then everything goes through the same
write-ahead submission as `caliban cloud` (`caliban.workflows.submit`).
Local jobs (failed, stopped, never started, or lost: RUNNING in the
history while their container is gone and no process runs their sweep) run
again through `caliban.workflows.local_sweep`. The group is locked exclusively meanwhile:
a `caliban cloud` or `caliban run` still working on it makes resubmit refuse.

Per experiment, only its latest job counts:

    latest job                              default     --all_jobs
    --------------------------------------  ----------  ----------
    PENDING, never sent                     same row    same row
    PENDING, maybe sent                     same row*   same row*
    FAILED with no remote id (create        same row*   same row*
      failed or its answer was lost)
    FAILED (the job ran and failed)         new job     new job
    STOPPED, PREEMPTED (out of capacity)    new job     new job
    SUBMITTED / RUNNING / STOPPING /        skipped     new job
      SUCCEEDED

"same row": the create was never answered, so the job is sent under its
original `caliban_key` (and ml v1 jobId); `*` the submitter first lists jobs
by that label and adopts one it finds, so nothing runs twice. "new job": a
new attempt row on the same experiment, with a fresh `caliban_key` and (ml
v1) a fresh jobId; the old row stays as history.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
from collections import defaultdict

from caliban.errors import CalibanError, UsageError, warn
from caliban.history import Job, restore_secret_env, states


@dataclasses.dataclass(frozen=True)
class Resend:
    job: Job  # the latest job of the experiment
    new_attempt: bool  # False: send the same row again (same key)

    @property
    def reason(self) -> str:
        job = self.job
        if job.status == states.PENDING:
            return "maybe sent: looked up by label first" if job.maybe_sent else "never sent"
        if job.status == states.FAILED and not job.remote_id:
            return "create failed: looked up by label first"
        return job.status.lower()


def select_resends(latest: list[Job], all_jobs: bool) -> tuple[list[Resend], list[Job]]:
    """(jobs to send, jobs left alone) among the latest jobs of a group's experiments."""
    chosen, left = [], []
    for job in latest:
        unanswered = job.status == states.PENDING or (
            job.status == states.FAILED and not job.remote_id
        )
        if unanswered:
            chosen.append(Resend(job, new_attempt=False))
        elif job.status in states.RERUN or all_jobs:
            chosen.append(Resend(job, new_attempt=True))
        else:
            left.append(job)
    return chosen, left


def retarget_request(backend_name: str, body: dict, *, image: str | None = None,
                     caliban_key: str | None = None, job_id_suffix: str | None = None) -> dict:
    """A copy of a recorded create body with a new image, key and (where the caller names jobs) id.

    Everything else (machine, args, user labels, scheduling) is kept as sent.
    """
    from caliban import backends
    from caliban.sweep import labels as job_labels
    from caliban.sweep.jobs import CALIBAN_KEY_LABEL, RUN_LABEL, run_token_of
    from caliban.sweep.labels import MAX_LABELS

    body = backends.get(backend_name).retarget(copy.deepcopy(body), image=image, job_id_suffix=job_id_suffix)
    labels = body.setdefault("labels", {})
    if image and "docker_image" in labels:
        labels.update(job_labels.sanitize_labels([("docker_image", image)]))
    if caliban_key:
        labels[CALIBAN_KEY_LABEL] = caliban_key
        if RUN_LABEL in labels or len(labels) < MAX_LABELS:  # a body recorded before the run label, already full
            labels[RUN_LABEL] = run_token_of(caliban_key)
    return body


@dataclasses.dataclass(frozen=True)
class Choice:
    """What resubmit would do with one group, shown before it does it."""

    group: object
    cloud: list  # Resend
    local: list  # Job
    left: list  # Job


def choose(store, remotes, group_name: str, *, all_jobs: bool, backend: str | None) -> Choice:
    """Locks the group, refreshes its live jobs and decides what to send again."""
    from caliban.workflows.refresh import refresh

    group = store.existing_group(group_name)
    # Exclusive: no sweep of this group is still sending or running its PENDING rows.
    store.lock_group(group, exclusive=True)
    latest = store.jobs(group=group.name, latest_only=True)
    local = [j for j in latest if not j.is_cloud]
    cloud = [j for j in latest if j.is_cloud]
    wrong_api = {j.backend for j in cloud} - {backend}
    if backend and wrong_api:
        raise UsageError(
            f"--backend {backend}: group {group.name} was sent to "
            f"{', '.join(sorted(wrong_api))}; its recorded request bodies are for that API "
            "(run `caliban cloud --backend ...` to start a new sweep instead)"
        )
    chosen, left = select_resends(refresh(store, remotes, cloud), all_jobs)
    # A RUNNING local job whose container is gone (and whose sweep is dead)
    # becomes FAILED here, so it runs again instead of being waited for forever.
    local = refresh(store, remotes, local)
    local_chosen = [j for j in local if all_jobs or j.status in states.RERUN | {states.PENDING}]
    left += [j for j in local if j not in local_chosen]
    return Choice(group, chosen, local_chosen, left)


def resubmit(store, remotes, choice: Choice, *, image_repo: str | None, rate_limit: int) -> int:
    """Sends the chosen cloud jobs and reruns the chosen local ones; exit status."""
    from caliban.workflows.local_sweep import rerun_local

    exit_code = _resend_cloud(store, remotes, choice, image_repo=image_repo, rate_limit=rate_limit) \
        if choice.cloud else 0
    if choice.local:
        exit_code = max(exit_code, rerun_local(store, choice.local, cloud_key=remotes.options.cloud_key
                                               or remotes.options.environment.cloud_key))
    return exit_code


def _image_for(store, item: Resend, target, image_repo: str | None) -> str:
    """The image URI to send: rebuilt from the recorded spec and pushed, or the recorded user-supplied tag."""
    from caliban import backends
    from caliban.options import BuildSpec
    from caliban.workflows import image as images

    exp = store.experiment(item.job.experiment_id)
    image = store.image(exp.image_id) if exp.image_id is not None else None
    recorded = image.build_args if image else {}
    recorded_uri = (image.uri if image else None) or backends.get(item.job.backend).image_of(item.job.request or {})
    if recorded.get("image_tag"):
        return recorded["image_tag"]
    if not recorded.get("project_dir") or not recorded.get("target"):
        if recorded_uri:
            warn(f"no build arguments recorded for this image; reusing {recorded_uri}")
            return recorded_uri
        raise CalibanError("the group's image has no build arguments and no URI recorded")
    spec = BuildSpec.from_recorded(recorded)
    repository = images.push_repository(spec, image_repo=image_repo, recorded_repo=recorded.get("image_repo"),
                                        project=target.project, region=target.region, recorded_uri=recorded_uri)
    pushed, _ = images.build_and_push(spec, repository, cloud_key=target.cloud_key)
    return pushed.uri


def _resend_cloud(store, remotes, choice: Choice, *, image_repo: str | None, rate_limit: int) -> int:
    """Rebuild and push the images, write the attempts, send them; exit status."""
    from caliban import backends
    from caliban.cloud.submit import SubmitJob, check_bodies
    from caliban.sweep.jobs import caliban_key, new_run_token
    from caliban.workflows.submit import send

    # Secret --env values are not in the history (caliban.history): they come
    # from this environment, or nothing is built, pushed or sent.
    requests, missing = {}, set()
    for item in choice.cloud:
        if item.job.request:
            requests[item.job.id], lacking = restore_secret_env(item.job.request, os.environ)
            missing.update(lacking)
    if missing:
        names = ", ".join(f"${name}" for name in sorted(missing))
        raise UsageError(f"these jobs were sent with --env {names}, whose value Caliban never stores; "
                         "export it and run resubmit again")

    # Images first: a build or push failure sends nothing.
    images: dict[tuple, str] = {}
    for item in choice.cloud:
        target = remotes.target(item.job)
        key = (store.experiment(item.job.experiment_id).image_id, target)
        if key not in images:
            images[key] = _image_for(store, item, target, image_repo)

    # Every body checked before anything is written; then every job to send is
    # a PENDING row before the first create.
    token = new_run_token()
    planned = []
    for item in choice.cloud:
        job = item.job
        if not job.request:
            print(f"  job {job.id}: no request body recorded; skipped", file=sys.stderr)
            continue
        if not item.new_attempt and not job.caliban_key:
            print(f"  job {job.id}: no caliban_key recorded, cannot tell whether it was sent; skipped",
                  file=sys.stderr)
            continue
        target = remotes.target(job)
        image = images[(store.experiment(job.experiment_id).image_id, target)]
        if item.new_attempt:
            key = caliban_key(token, job.experiment_id)
            body = retarget_request(target.backend, requests[job.id], image=image, caliban_key=key,
                                    job_id_suffix=token[:8])
        else:
            key = job.caliban_key
            body = retarget_request(target.backend, requests[job.id], image=image)
        display = backends.get(target.backend).display_name(body)
        planned.append((item, target, SubmitJob(key=key, body=body, display_name=display)))
    by_api: dict[str, list] = defaultdict(list)
    for _, target, submit_job in planned:
        by_api[target.backend].append(submit_job)
    for backend_name, jobs in by_api.items():
        check_bodies(backend_name, jobs)

    batches: dict[object, list] = defaultdict(list)
    for item, target, submit_job in planned:
        job = item.job
        if item.new_attempt:
            submit_job.payload = store.add_job(
                job.experiment_id, backend=target.backend, request=submit_job.body, caliban_key=submit_job.key,
                name=submit_job.display_name, project=target.project, region=target.region,
                api_endpoint=target.api_endpoint, cloud_key=target.cloud_key)
        else:
            submit_job.payload = job.id
            if submit_job.body != job.request:
                store.update_request(job.id, submit_job.body)
        batches[target].append(submit_job)

    exit_code = 0
    for target, jobs in batches.items():
        exit_code = max(exit_code, send(store, remotes.adapter(target), jobs, rate_limit=rate_limit,
                                        check_existing=True,
                                        resume_hint=f"To resume: caliban resubmit --xgroup {choice.group.name}"))
    return exit_code
