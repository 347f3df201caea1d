"""Setting up a job history by hand, the way Caliban's own commands record one."""

from caliban import history


def record_job(store, group_id: int, args=(), *, backend: str = "local", flags=None, image_id=None,
               request=None, caliban_key=None, name=None, **sweep) -> int:
    """One PENDING job recorded as a sweep records its jobs (`Store.add_jobs`):
    on the group's experiment with these arguments, or a new one. `sweep`
    carries add_jobs' per-sweep fields (project, region, api_endpoint, user)."""
    new = history.NewJob(args=list(args), flags=flags, request=request, caliban_key=caliban_key, name=name)
    (job_id,) = store.add_jobs(group_id, [new], backend=backend, image_id=image_id, **sweep)
    return job_id
