"""The clustering and merging tasks as jobs: thin shells over ``services.clustering_task`` and
``services.cluster_merging``, run by the dataset's actor (``immray.actors.dataset``); both wait out an
unreachable Milvus (``jobs.vector_outage``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from immray.jobs.context import JobContext
from immray.jobs.registry import job
from immray.jobs.vector_outage import waiting_for_milvus
from immray.services import cluster_merging, clustering_task


@job(clustering_task.JOB_NAME, task=True)
def face_clustering(ctx: JobContext, payload: Mapping[str, Any]) -> None:
    waiting_for_milvus(ctx, lambda: clustering_task.run_clustering(ctx.db, ctx, int(payload["dataset_id"])))


@job(cluster_merging.JOB_NAME, task=True)
def figure_clusters_merging(ctx: JobContext, payload: Mapping[str, Any]) -> None:
    waiting_for_milvus(
        ctx,
        lambda: cluster_merging.run_merging(
            ctx.db, ctx, int(payload["dataset_id"]), str(payload["to"]), tuple(payload["froms"])
        ),
    )
