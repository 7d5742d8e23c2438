"""How work runs: jobs registered by name, submitted with :func:`submit`, run by a backend.

A job is a thin shell around a service (``@job("name", task=True)``) that receives a
:class:`immray.jobs.context.JobContext`; on Ray the backend is the ingress replica's
:class:`immray.serve.jobs.RayJobBackend` (tasks to the dataset actors, photos to the analysis deployment). This package's top level imports no
service, so services can submit jobs.
"""

from immray.jobs.registry import JobSpec, get_job, job, job_names
from immray.jobs.submission import install_backend, submit, uninstall_backend

__all__ = ["JobSpec", "get_job", "install_backend", "job", "job_names", "submit", "uninstall_backend"]
