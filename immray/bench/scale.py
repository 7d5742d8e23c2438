"""How immray's clustering scales: synthetic descriptors fitted on real ones, 100k and 1M faces.

    nice python -m immray.bench.scale ../shared/eval/dev [--sizes 100000 1000000] [--embeddings FILE]
        [--index exact faiss milvus-lite milvus]   (milvus: the server of IMMRAY_MILVUS_URI)

For each size, in a fresh process (so peak memory is that run's alone; with Milvus, its processes' memory is
sampled and added): cluster every face from scratch in one update, then add 1,000 new faces three times (photos of known and unknown people, held out of the first
run) and report the time of each, plus the state's size in bytes and its save/load times. Then DBSCAN
(eps 0.5, min_samples 3) and HDBSCAN (min_cluster_size 2) on the 100k set, each with a time limit.
The synthetic model is fitted on the real set first; its same/different-person distance profile is printed
beside the real one. Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from immray.bench.dev_faces import CACHE_DIR, load_faces
from immray.bench.synthetic import DescriptorModel, distance_profile

HERE = Path(__file__).resolve().parent

ADD_BATCH = 1_000
ADD_ROUNDS = 3


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _processes() -> dict[int, tuple[int, bytes]]:
    """pid -> (parent pid, command line) of every process on this host."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent = int(f.read().rsplit(b")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    found[int(entry)] = (parent, f.read().replace(b"\0", b" "))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _milvus_pids(kind: str) -> list[int]:
    """The Milvus processes a run uses: for ``milvus-lite``, this process's descendants (the lite server
    pymilvus starts); for ``milvus``, the server's processes on this host (not a lite server's)."""
    procs = _processes()
    if kind == "milvus-lite":
        mine, grew = {os.getpid()}, True
        while grew:
            more = {pid for pid, (parent, _) in procs.items() if parent in mine} - mine
            mine |= more
            grew = bool(more)
        return sorted(mine - {os.getpid()})
    if kind == "milvus":
        return [
            pid
            for pid, (_, cmd) in procs.items()
            if b"milvus" in cmd
            and b"milvus-lite" not in cmd
            and b"milvus_lite" not in cmd
            and pid != os.getpid()
        ]
    return []


class PeakMemory:
    """Samples (every 0.5 s) the resident memory of this process plus every Milvus process on the host,
    and keeps the peak of the sum: the bench's "all processes, Milvus included". ``at_peak`` says how the
    peak split (this process, Milvus) and in which phase of the run (``phase``, set by the run) it came."""

    def __init__(self, kind: str) -> None:
        import threading

        self.kind = kind
        self.peak_mb = 0.0
        self.phase = "start"
        self.at_peak: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            mine = _rss_mb(os.getpid())
            milvus = sum(_rss_mb(pid) for pid in _milvus_pids(self.kind))
            if mine + milvus > self.peak_mb:
                self.peak_mb = mine + milvus
                self.at_peak = {"process_mb": mine, "milvus_mb": milvus, "phase": self.phase}
            self._stop.wait(0.5)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def dataset(model_path: Path, n: int, seed: int):
    data = np.load(model_path)
    model = DescriptorModel(
        data["mean"], data["between"], data["within"], data["sizes"], float(data["person_spread"])
    )
    rng = np.random.default_rng(seed)
    x, people = model.sample(n + ADD_BATCH * ADD_ROUNDS, rng)
    held = np.sort(rng.choice(len(x), ADD_BATCH * ADD_ROUNDS, replace=False))
    first = np.setdiff1d(np.arange(len(x)), held)
    return x, people, first, held


def index_factory(name: str):
    """The engine's neighbour index for ``--index``: exact (numpy, the default) or the faiss baseline."""
    if name == "faiss":
        from immray.bench.faiss_index import faiss_index_factory

        return faiss_index_factory()
    from immray.clustering import exact_index

    return exact_index


class TimedClient:
    """A ``MilvusClient`` whose calls are timed: where an add's seconds go (``calls`` since ``reset``)."""

    def __init__(self, client) -> None:
        self._client = client
        self.calls: dict[str, list[float]] = {}

    def reset(self) -> dict[str, list[float]]:
        calls, self.calls = self.calls, {}
        return calls

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.calls.setdefault(name, []).append(time.perf_counter() - start)

        return timed


def milvus_indexes(which: str, x: np.ndarray, out: dict):
    """The engine's index on Milvus (``milvus-lite``: a fresh one in this process; ``milvus``: the server of
    IMMRAY_MILVUS_URI), with every face's vector written first, as the indexing service does (timed apart:
    ``write_s``). A server's own memory is not in this process's peak RSS."""
    import tempfile

    from pymilvus import MilvusClient

    from immray.clustering.neighbours import normalise
    from immray.vectors.index import DatasetIndexes
    from immray.vectors.store import FaceVectors

    if which == "milvus":
        uri = os.environ.get("IMMRAY_MILVUS_URI")
        if not uri:
            raise SystemExit("--index milvus needs IMMRAY_MILVUS_URI (a Milvus server)")
        store = FaceVectors(TimedClient(MilvusClient(uri)), prefix=f"bench_{os.getpid()}", backend="server")
    else:
        path = Path(tempfile.mkdtemp(prefix="immray-scale-")) / "faces.db"
        store = FaceVectors(TimedClient(MilvusClient(str(path))), prefix="bench", backend="lite")
    collection = store.collection("synthetic", x.shape[1])
    start = time.perf_counter()
    for lo in range(0, len(x), 50_000):
        part = np.arange(lo, min(lo + 50_000, len(x)))
        store.upsert(collection, 1, part.tolist(), normalise(x[part]))
    out["write_s"] = time.perf_counter() - start
    if which == "milvus":  # a server builds its HNSW in the background; searched before, it scans segments
        start = time.perf_counter()
        store.client.flush(collection)
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            info = store.client.describe_index(collection, "vector")
            if "indexed_rows" not in info or int(info["indexed_rows"]) >= len(x):
                break
            time.sleep(2)
        out["index_s"] = time.perf_counter() - start
    return DatasetIndexes(store, 1, "synthetic")


def settle(store, quiet: float = 60.0, limit: float = 1800.0) -> float:
    """Wait until the server has no rows left to index for ``quiet`` seconds running: after a bulk load it
    merges its small segments and indexes each merged one again (minutes at 1M, both cores busy), and adds
    measured meanwhile measure that. Returns the seconds waited."""
    start = time.monotonic()
    calm_since = None
    while time.monotonic() - start < limit:
        pending = sum(
            int(store.client.describe_index(name, "vector").get("pending_index_rows", 0))
            for name in store.collections()
        )
        now = time.monotonic()
        if pending:
            calm_since = None
        elif calm_since is None:
            calm_since = now
        elif now - calm_since >= quiet:
            break
        time.sleep(5)
    return time.monotonic() - start


def run_immray(model_path: Path, n: int, seed: int, index: str = "exact") -> dict:
    from immray.clustering import Change, Engine, NewFace
    from immray.clustering.metrics import score

    x, people, first, held = dataset(model_path, n, seed)

    def faces(rows):
        return [NewFace(int(r), x[r], int(r), 0.9) for r in rows.tolist()]

    out: dict = {"faces": n, "rss_data_mb": peak_rss_mb()}
    memory = PeakMemory(index)
    if index.startswith("milvus"):
        memory.phase = "writing the vectors"
        indexes = milvus_indexes(index, x, out)
        engine = Engine(index_factory=indexes)
        state = engine.new_state("scale")
        indexes.bind(state)
    else:
        engine = Engine(index_factory=index_factory(index))
        state = engine.new_state("scale")
    batch = faces(first)
    memory.phase = "first run"
    start, cpu = time.perf_counter(), time.process_time()
    engine.update(state, Change(added=batch))
    out["full_s"] = time.perf_counter() - start
    out["full_cpu_s"] = time.process_time() - cpu
    out["peak_rss_mb"] = peak_rss_mb()
    del batch
    out["clusters"] = state.n_clusters
    labels = [state.cluster_of(int(r)) for r in first.tolist()]
    s = score(people[first].tolist(), labels)
    out["bcubed_f1"], out["pairwise_f1"] = s.bcubed_f1, s.pairwise_f1
    if index == "milvus":
        memory.phase = "server settling"
        out["settle_s"] = settle(indexes.store)
    memory.phase = "adds"
    adds, add_cpu, add_calls = [], [], []
    client = indexes.store.client if index.startswith("milvus") else None
    for part in np.array_split(held, ADD_ROUNDS):
        change = Change(added=faces(part))
        if client is not None:
            client.reset()
        start, cpu = time.perf_counter(), time.process_time()
        engine.update(state, change)
        adds.append(time.perf_counter() - start)
        add_cpu.append(time.process_time() - cpu)
        if client is not None:
            add_calls.append({name: [len(t), sum(t)] for name, t in client.reset().items()})
    out["add_s"], out["add_cpu_s"] = adds, add_cpu
    if add_calls:
        out["add_calls"] = add_calls
    start = time.perf_counter()
    blob = state.to_bytes()
    out["save_s"] = time.perf_counter() - start
    out["state_mb"] = len(blob) / 2**20
    start = time.perf_counter()
    engine.load_state(blob, index=state.index)  # the vectors stay in the index: only the state is read
    out["load_s"] = time.perf_counter() - start
    out["peak_rss_end_mb"] = peak_rss_mb()
    out["peak_all_mb"] = memory.stop()
    out["at_peak"] = memory.at_peak
    return out


def run_baseline(model_path: Path, n: int, seed: int, which: str, memory_gb: float) -> dict:
    from immray.clustering.metrics import score

    # A cap on this process's address space, so that a baseline that needs too much fails with MemoryError
    # here instead of waking the kernel's OOM killer on a shared machine (sklearn's DBSCAN at 100k did).
    limit = int(memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    x, people, first, _ = dataset(model_path, n, seed)
    x, people = x[first], people[first]
    out: dict = {"faces": n, "rss_data_mb": peak_rss_mb()}
    start, cpu = time.perf_counter(), time.process_time()
    if which == "dbscan":
        from sklearn.cluster import DBSCAN

        try:
            labels = DBSCAN(eps=0.5, min_samples=3).fit_predict(x)
        except MemoryError:
            return {"error": f"ran out of memory: needs more than {memory_gb:g} GB"}
    else:
        import hdbscan

        try:
            labels = hdbscan.HDBSCAN(min_cluster_size=2, core_dist_n_jobs=1).fit_predict(x)
        except MemoryError:
            return {"error": f"ran out of memory: needs more than {memory_gb:g} GB"}
    out["full_s"] = time.perf_counter() - start
    out["full_cpu_s"] = time.process_time() - cpu
    out["peak_rss_mb"] = peak_rss_mb()
    s = score(people.tolist(), [None if lab < 0 else int(lab) for lab in labels])
    out["bcubed_f1"], out["pairwise_f1"] = s.bcubed_f1, s.pairwise_f1
    return out


def child(args: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    if done.returncode < 0:
        return {"error": f"killed by signal {-done.returncode} (9: e.g. the kernel's out-of-memory killer)"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, nargs="?")
    ap.add_argument("--detector", help="immray.faces detector (default: the analyzer's default)")
    ap.add_argument("--embeddings", type=Path)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--baselines-at", type=int, default=100_000, help="0 to skip the baselines")
    ap.add_argument("--baselines", nargs="*", default=["dbscan", "hdbscan"], choices=["dbscan", "hdbscan"])
    ap.add_argument("--baseline-timeout", type=float, default=3600)
    ap.add_argument("--baseline-memory-gb", type=float, default=8.0, help="address-space cap for baselines")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--index",
        nargs="+",
        default=["exact"],
        choices=["exact", "faiss", "milvus-lite", "milvus"],
        help="engine index(es), side by side",
    )
    ap.add_argument("--worker", nargs=3, metavar=("KIND", "N", "MODEL"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        kind, n, model_path = args.worker[0], int(args.worker[1]), Path(args.worker[2])
        if kind.startswith("immray"):
            result = run_immray(model_path, n, args.seed, kind.partition(":")[2] or "exact")
        else:
            result = run_baseline(model_path, n, args.seed, kind, args.baseline_memory_gb)
        print(json.dumps(result))
        return

    real = load_faces(args.folder, args.embeddings, args.detector)
    rng = np.random.default_rng(args.seed)
    model = DescriptorModel.fit(real.embeddings, real.identities, rng)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    model_path = CACHE_DIR / "synthetic-model.npz"
    np.savez(
        model_path,
        mean=model.mean,
        between=model.between,
        within=model.within,
        sizes=model.sizes,
        person_spread=model.person_spread,
    )
    fake, fake_people = model.sample(len(real), rng)
    print(
        f"descriptor model fitted on {len(real)} faces ({real.source}); person spread {model.person_spread}"
    )
    print("distances of normalised descriptors: mean, p5, p50, p95")
    for name, (xs, ls) in {
        "real": (real.embeddings, real.identities),
        "synthetic": (fake, fake_people),
    }.items():
        prof = distance_profile(xs, ls, np.random.default_rng(1))
        same, diff = (" ".join(f"{v:.3f}" for v in prof[k]) for k in ("same", "different"))
        print(f"  {name:10s} same person: {same}   different people: {diff}")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"\nmachine: {os.cpu_count()} cores, load average {load}; adds: {ADD_ROUNDS} x {ADD_BATCH:,} new faces"
    )
    for n, index in ((n, index) for n in args.sizes for index in args.index):
        worker = ["--worker", f"immray:{index}", str(n), str(model_path), "--seed", str(args.seed)]
        r = child(worker, timeout=3 * 3600)
        if "error" in r:
            print(f"immray ({index}) {n:>9,} faces: {r['error']}")
            continue
        adds = ", ".join(f"{t:.2f}" for t in r["add_s"])
        add_cpu = ", ".join(f"{t:.2f}" for t in r["add_cpu_s"])
        print(
            f"immray ({index}) {n:>9,} faces: full clustering {r['full_s']:.1f} s wall ({r['full_cpu_s']:.1f} s CPU), "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (input data alone {r['rss_data_mb']:.0f} MB); "
            f"add {ADD_BATCH:,}: {adds} s wall (median {float(np.median(r['add_s'])):.2f}; CPU {add_cpu}); "
            f"{r['clusters']:,} clusters, BCubed F1 {r['bcubed_f1']:.3f}, pairwise F1 {r['pairwise_f1']:.3f}; "
            f"state {r['state_mb']:.0f} MB, save {r['save_s']:.1f} s, load {r['load_s']:.1f} s; "
            f"peak memory with Milvus's processes {r['peak_all_mb']:.0f} MB"
            + (f"; vectors written first in {r['write_s']:.1f} s" if "write_s" in r else "")
            + (f", indexed in {r['index_s']:.1f} s more" if "index_s" in r else "")
            + (f"; adds after the server settled ({r['settle_s']:.0f} s)" if "settle_s" in r else "")
            + (
                f"; at the peak: {r['at_peak']['process_mb']:.0f} MB this process, "
                f"{r['at_peak']['milvus_mb']:.0f} MB Milvus, during {r['at_peak']['phase']}"
                if r.get("at_peak")
                else ""
            ),
            flush=True,
        )
        for i, calls in enumerate(r.get("add_calls", ())):
            spent = ", ".join(f"{name} {n} in {secs:.2f} s" for name, (n, secs) in sorted(calls.items()))
            print(f"  add {i + 1}: Milvus calls {spent}")
    if args.baselines_at:
        n = args.baselines_at
        for kind in args.baselines:
            worker = ["--worker", kind, str(n), str(model_path), "--seed", str(args.seed)]
            cap = ["--baseline-memory-gb", str(args.baseline_memory_gb)]
            r = child(worker + cap, args.baseline_timeout)
            if "error" in r:
                print(f"{kind:9s} {n:>9,} faces: {r['error']}")
                continue
            print(
                f"{kind:9s} {n:>9,} faces: full clustering {r['full_s']:.1f} s wall ({r['full_cpu_s']:.1f} s CPU), "
                f"peak RSS {r['peak_rss_mb']:.0f} MB "
                f"(input data alone {r['rss_data_mb']:.0f} MB); BCubed F1 {r['bcubed_f1']:.3f}, "
                f"pairwise F1 {r['pairwise_f1']:.3f}; no incremental add"
            )


if __name__ == "__main__":
    main()
