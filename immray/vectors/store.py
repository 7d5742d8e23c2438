"""The face vector store: each stored face's normalised embedding in Milvus, keyed by the face's primary key.

Decisions (milvus-lite 3.2.2 and the `milvus` 2.3.5 server as installed here; figures from issue 15's
measurements unless said otherwise):

- **Layout: one collection per embedder** (model name and dimension: only equal models compare), named
  ``<prefix>_<model slug>_<hash>_<dim>``, with ``dataset_id`` as its **partition key**. Datasets come and go
  by the thousand; a collection each would cost a schema, an index and a load per dataset (a server caps its
  collections, and makes each one in about a second), whereas a partition key keeps a dataset's rows
  together and a search filtered by ``dataset_id == D`` reads that dataset alone. Deleting a dataset is a
  delete by that filter.
- **Fields**: ``id`` (INT64, the store's ``figures.id``: the same key on every retry, so writes are
  idempotent), ``dataset_id`` (INT64, partition key), ``vector`` (FLOAT_VECTOR, L2-normalised by
  ``immray.clustering.neighbours.normalise``, bit for bit what the engine computes).
- **Metric: IP** on normalised vectors (cosine similarity, the engine's).
- **Index**: milvus-lite: FLAT, exact, so the clusters equal the in-memory engine's. Its other indexes cost
  accuracy or memory and were no faster (measured 2026-12-05 at 1M clustered 128-d vectors, 1,000 queries
  filtered to the dataset, 27 hits each): FLAT 14-16 s (exact); IVF_FLAT (nlist 256) 3.5-4 s at nprobe 16
  with 0.83 of the 11 true neighbours found, 5 s at 32 (0.93), 9 s at 64 (0.98), ~10 GB resident; HNSW
  (M=16, efConstruction 100) 18-21 s while it builds in the background (still building after 6 minutes;
  0.98-0.995 found), 12 GB resident. The C++ milvus-lite 2.5.1 takes 11.5 s (FLAT only, and its partition-key
  filter fails). Server: HNSW (M=16, efConstruction=200), searched
  with ef = max(256, 2k) (~5 ms a query at 1M); the tests find the same clusters on it as in memory.
- **Consistency**: the collection is Strong, and so is every read by default (the API's lookups, scans,
  counts, the drift check, and ``ensure``'s check of a task's new faces): each sees every write of every
  process. A Strong read waits for the server's next time tick, ~0.2 s a call (measured at 1M on the
  `milvus` 2.3.5 server: adding 1,000 faces made 15 reads, 4.9 s by the clock for 0.4 s of CPU). The
  engine's reads within a task (``search`` and ``get`` with ``session=True``) come after a Strong read of the
  same task (``ensure``, or the scan that attaches a restarted actor's faces) or after its own writes, so on
  a standalone server (one query node, whose view only moves forward) a Session read sees what that read
  saw plus the writes of this process. For the same reason a read in many calls (``get`` of more than
  ``_GET_BATCH`` keys, ``scan``'s pages) is Strong for its first call only: at 1M faces a first task's check
  of every face made 1,000 Strong calls, ~300 s of waiting. A first attempt made every engine read Session,
  ``ensure``'s too: a fresh process's Session read has no write timestamp and reads "eventually", so after a
  node's loss the repair missed a vector whose delete (of a delete + insert) the server had not applied yet, and the drift
  check found it missing. On a distributed Milvus with several query replicas, run the engine Strong
  (``IMMRAY_MILVUS_SESSION_READS=false``).
- **Writes on the server are delete + insert**: Milvus 2.3's upsert into a partition-key collection kept 3 of
  100 rows here (measured with pymilvus 3.0.2). A cut between the two is a missing vector, which the next
  task repairs like any other.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

log = logging.getLogger("immray.vectors")

_WRITE_BATCH = 2_000  # rows per upsert
_GET_BATCH = 1_000  # keys per get / delete
# Queries per search call. milvus-lite's FLAT search multiplies the queries by each segment's vectors
# (100k rows a segment) and then takes each query's top hits with numpy, one query at a time (argpartition:
# two thirds of a 1,000-query search at 1M, 14-16 s in all; rows still in its memtable are first converted
# row by row in Python). A task's 1,000 new faces go in one call (a 1,024 x 100k block per segment: 400 MB). A server answers ~1,000
# queries a second on HNSW whatever the batch: a task's 1,000 new faces go in one call too (half a megabyte
# of queries), which saves a call's round trip and, for Strong reads, its wait for the time tick.
_QUERY_BATCH = {"lite": 1_024, "server": 1_024}
_MAX_LIMIT = 16_384  # Milvus's top-k ceiling
_PAGE = 16_384  # rows per query page (Milvus's ceiling)


def collection_name(prefix: str, model: str, dim: int) -> str:
    """``<prefix>_<slug>_<hash>_<dim>``: a valid Milvus name, unique per (model, dim)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", model).strip("_").lower()[:40] or "model"
    digest = hashlib.sha1(model.encode()).hexdigest()[:8]
    return f"{prefix}_{slug}_{digest}_{int(dim)}"


class FaceVectors:
    """Face vectors of every dataset in one Milvus, through a ``MilvusClient``."""

    def __init__(
        self, client, *, prefix: str = "immray_faces", backend: str = "lite", session_reads: bool = True
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.backend = backend
        self.session_reads = session_reads  # see the module's docstring (Consistency)
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    # --- collections -------------------------------------------------------------------------------

    def collection(self, model: str, dim: int) -> str:
        """The collection of ``model``'s ``dim``-d vectors, created (and loaded) on first use."""
        name = collection_name(self.prefix, model, dim)
        if name in self._ready:
            return name
        with self._lock:
            if name not in self._ready:
                if not self.client.has_collection(name):
                    self._create(name, dim)
                self.client.load_collection(name)
                self._ready.add(name)
        return name

    def collections(self) -> list[str]:
        """Every collection of this store (its prefix), loaded (a restarted Milvus has them released)."""
        pattern = re.compile(rf"^{re.escape(self.prefix)}_.+_[0-9a-f]{{8}}_[0-9]+$")
        names = sorted(n for n in self.client.list_collections() if pattern.match(n))
        for name in names:
            if name not in self._ready:
                with self._lock:
                    self.client.load_collection(name)
                    self._ready.add(name)
        return names

    def _create(self, name: str, dim: int) -> None:
        from immray.vectors.client import import_pymilvus

        pymilvus = import_pymilvus()
        DataType, MilvusClient = pymilvus.DataType, pymilvus.MilvusClient  # noqa: N806

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("dataset_id", DataType.INT64, is_partition_key=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=int(dim))
        params = self.client.prepare_index_params()
        if self.backend == "server":
            params.add_index(
                "vector", index_type="HNSW", metric_type="IP", params={"M": 16, "efConstruction": 200}
            )
        else:
            params.add_index("vector", index_type="FLAT", metric_type="IP")
        try:
            self.client.create_collection(
                name, schema=schema, index_params=params, consistency_level="Strong"
            )
        except Exception:
            if not self.client.has_collection(name):  # another process made it meanwhile: fine
                raise
        log.info("created Milvus collection %s (%s, %d-d)", name, self.backend, dim)

    def _read_level(self, session: bool) -> dict:
        """The consistency of a read: Strong unless the caller follows a Strong read of its own (see the
        module's docstring); milvus-lite is strong by construction."""
        if self.backend != "server" or not (session and self.session_reads):
            return {}
        return {"consistency_level": "Session"}

    def _search_params(self, limit: int) -> dict:
        if self.backend == "server":
            return {"metric_type": "IP", "params": {"ef": max(256, 2 * limit)}}
        return {"metric_type": "IP"}

    # --- writes ------------------------------------------------------------------------------------

    def upsert(self, collection: str, dataset_id: int, keys: Sequence[int], vectors: np.ndarray) -> None:
        """Store ``vectors`` (normalised, (n, dim)) under face ``keys`` of ``dataset_id``; idempotent."""
        vectors = np.asarray(vectors, np.float32)
        for lo in range(0, len(keys), _WRITE_BATCH):
            rows = [
                {"id": int(k), "dataset_id": int(dataset_id), "vector": v.tolist()}
                for k, v in zip(keys[lo : lo + _WRITE_BATCH], vectors[lo : lo + _WRITE_BATCH], strict=True)
            ]
            if self.backend == "server":  # see the module's docstring: upsert loses rows on Milvus 2.3
                self.client.delete(collection, ids=[r["id"] for r in rows])
                self.client.insert(collection, rows)
            else:
                self.client.upsert(collection, rows)

    def ensure(self, collection: str, dataset_id: int, keys: Sequence[int], vectors: np.ndarray) -> int:
        """Upsert only the faces whose stored vector is missing or differs (the repair of a write lost
        between the SQL commit and Milvus); returns how many were written. Read by key: ~30 µs a key on
        milvus-lite at 100k faces, where a scan of the dataset costs ~50 µs a row and a full walk per page."""
        vectors = np.asarray(vectors, np.float32)
        keys = [int(k) for k in keys]
        stale = []
        for lo, held in self.get_batches(collection, keys, dataset_id=dataset_id):
            stale += [
                i
                for i in range(lo, min(lo + _GET_BATCH, len(keys)))
                if (got := held.get(keys[i])) is None or not np.array_equal(got, vectors[i])
            ]
        if stale:
            self.upsert(collection, dataset_id, [keys[i] for i in stale], vectors[stale])
        return len(stale)

    def delete_keys(self, keys: Iterable[int], collections: Sequence[str] | None = None) -> None:
        """Delete faces by key from every collection (a key not held is ignored)."""
        keys = [int(k) for k in keys]
        if not keys:
            return
        for name in collections if collections is not None else self.collections():
            for lo in range(0, len(keys), _GET_BATCH):
                self.client.delete(name, ids=keys[lo : lo + _GET_BATCH])

    def delete_dataset(self, dataset_id: int) -> None:
        """Delete every vector of a dataset."""
        for name in self.collections():
            self.client.delete(name, filter=f"dataset_id == {int(dataset_id)}")

    # --- reads -------------------------------------------------------------------------------------

    def get(
        self,
        collection: str,
        keys: Sequence[int],
        *,
        missing_ok: bool = False,
        dataset_id: int | None = None,
        session: bool = False,
    ) -> dict[int, np.ndarray]:
        """The stored vectors of ``keys`` (of ``dataset_id`` only, when given); KeyError for a missing one
        unless ``missing_ok``. ``session``: the caller read Strong before (see the module's docstring)."""
        keys = [int(k) for k in keys]
        out: dict[int, np.ndarray] = {}
        for _, found in self.get_batches(collection, keys, dataset_id=dataset_id, session=session):
            out.update(found)
        if not missing_ok and len(out) != len(set(keys)):
            missing = [k for k in keys if k not in out]
            raise KeyError(f"face vectors missing from Milvus: {missing[:5]}")
        return out

    def get_batches(
        self,
        collection: str,
        keys: Sequence[int],
        *,
        dataset_id: int | None = None,
        session: bool = False,
    ) -> Iterator[tuple[int, dict[int, np.ndarray]]]:
        """``get`` one call at a time: (offset into ``keys``, the vectors found of that call's keys), so a
        caller reading a million faces holds one call's answer at a time rather than all of them."""
        fields = ["vector"] if dataset_id is None else ["vector", "dataset_id"]
        for lo in range(0, len(keys), _GET_BATCH):
            # One Strong batch makes the server's view current; the later batches of the call see at least
            # that (a Strong read each cost 0.2-0.4 s: 1,000 of them at 1M, most of a first task's time).
            hits = self.client.get(
                collection,
                ids=[int(k) for k in keys[lo : lo + _GET_BATCH]],
                output_fields=fields,
                **self._read_level(session or lo > 0),
            )
            yield (
                lo,
                {
                    int(hit["id"]): np.asarray(hit["vector"], np.float32)
                    for hit in hits
                    if dataset_id is None or int(hit["dataset_id"]) == int(dataset_id)
                },
            )

    def keys(self, dataset_id: int, collections: Sequence[str] | None = None) -> dict[str, set[int]]:
        """Every face key a dataset has in each collection."""
        where = f"dataset_id == {int(dataset_id)}"
        return {
            name: {int(r["id"]) for r in self.scan(name, where, ["id"])}
            for name in (collections if collections is not None else self.collections())
        }

    def scan(self, collection: str, where: str, fields: list[str]) -> Iterator[dict]:
        """Every row matching ``where``, in pages. A server pages by primary key (its query results come
        sorted by it; its query iterator, on Milvus 2.3, reads a client-side timestamp that may miss the
        latest writes); milvus-lite, whose results come in insertion order, through its query iterator."""
        if self.backend == "server":
            last = None
            while True:
                cond = where if last is None else f"({where}) and id > {last}" if where else f"id > {last}"
                page = self.client.query(  # Strong first, then as ``get``'s later batches
                    collection,
                    filter=cond,
                    output_fields=sorted({"id", *fields}),
                    limit=_PAGE,
                    **self._read_level(last is not None),
                )
                yield from page
                if len(page) < _PAGE:
                    return
                last = max(int(r["id"]) for r in page)
        it = self.client.query_iterator(collection, batch_size=5_000, filter=where, output_fields=fields)
        try:
            while batch := it.next():
                yield from batch
        finally:
            it.close()

    def count(self, dataset_id: int | None = None) -> int:
        """How many vectors the store holds (of one dataset)."""
        total = 0
        where = "" if dataset_id is None else f"dataset_id == {int(dataset_id)}"
        for name in self.collections():
            rows = self.client.query(name, filter=where, output_fields=["count(*)"])
            total += int(rows[0]["count(*)"]) if rows else 0
        return total

    def search(
        self, collection: str, dataset_id: int, queries: np.ndarray, limit: int, *, session: bool = False
    ) -> list[list[tuple[int, float]]]:
        """Each query's ``limit`` most similar faces of one dataset: (key, inner product), best first;
        many queries per call. ``session``: the caller read Strong before (see the module's docstring)."""
        queries = np.asarray(queries, np.float32)
        limit = min(int(limit), _MAX_LIMIT)
        out: list[list[tuple[int, float]]] = []
        step = _QUERY_BATCH.get(self.backend, 512)
        for lo in range(0, len(queries), step):
            part = queries[lo : lo + step]
            hits = self.client.search(
                collection,
                data=[q for q in part],
                limit=limit,
                filter=f"dataset_id == {int(dataset_id)}",
                anns_field="vector",
                search_params=self._search_params(limit),
                **self._read_level(session),
            )
            out.extend([(int(h["id"]), float(h["distance"])) for h in q] for q in hits)
        return out
