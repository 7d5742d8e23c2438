"""How work runs: jobs registered by name, submitted with :func:`submit`, run by a backend.

A job is a thin shell around a service (``@job("name", task=True)``) that receives a
:class:`immray.jobs.context.JobContext`; the backend that runs it is the in-process
:class:`immray.jobs.local.LocalWorkerPool` by default, and the same names and payloads can be handed to
another backend (Celery, for scale-out) without touching the jobs. This package's top level imports no
service, so services can submit jobs.
"""

from immray.jobs.registry import JobSpec, get_job, job, job_names
from immray.jobs.submission import install_backend, submit, uninstall_backend

__all__ = ["JobSpec", "get_job", "install_backend", "job", "job_names", "submit", "uninstall_backend"]
