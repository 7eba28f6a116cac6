"""Exact search vs ANN libraries at the real catalogue size: is the tuned ScaNN index worth it?

Compares, on the same item vectors and queries and the same number of threads:

* exact search: numpy (matmul + ``modules.topk.top_rows``, the evaluator's exact scorer),
  TensorFlow (matmul + ``top_k``, what the brute-force serving model does), both as the ScaNN
  component times them (``components.scann_index.speed``), and Faiss ``IndexFlatIP``;
* Faiss IVF (``IndexIVFFlat``) and HNSW (``IndexHNSWFlat``), hnswlib, each at the cheapest search
  setting of a sweep that reaches the recall target;
* ScaNN tuned by ``components.scann_index.index.tune`` (the pipeline's own tuner and grid: the
  cheapest configuration by distance computations per query that reaches the target).

For each: build time, index memory (serialized size), batched and one-query-at-a-time queries/s
(medians of ``--repeats`` runs, the methods' runs interleaved so that load on a shared machine hits
them alike) and Recall@K against exact search. Faiss and hnswlib are optional: a library that is
not installed is reported as such.

Vectors: ``--source clustered`` (default) draws ``--items`` item vectors of ``--dim`` dimensions
from a Gaussian mixture with power-law cluster sizes and queries near the clusters' centres (the
geometry two-tower embeddings have: items in category clusters, users near what they browse);
``--source model --model DIR --queries CSV`` takes a brute-force serving model's catalogue and its
``user_vectors`` of the raw user columns of an export's ``eval/interactions.csv``.

Usage::

    TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/bench_ann.py [--items 235000] [--dim 65] \\
        [--threads 2] [--repeats 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

THREADS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _set_threads(threads: int) -> None:
    # Before numpy, TensorFlow or Faiss start their thread pools.
    for name in THREADS_ENV:
        os.environ[name] = str(threads)


def _early_threads(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--threads", type=int, default=2)
    return parser.parse_known_args(argv)[0].threads


if __name__ == "__main__":
    _set_threads(_early_threads(sys.argv[1:]))

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from components.scann_index import index, speed  # noqa: E402

# ---------------------------------------------------------------- data


def clustered_vectors(
    n_items: int, n_queries: int, dim: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-mixture items (power-law cluster sizes) and queries near cluster centres.

    The last dimension is a per-item bias (the two-tower's ``d + 1``-th column), drawn from a
    narrow normal like the trained model's.
    """
    rng = np.random.default_rng(seed)
    n_clusters = max(8, n_items // 200)
    centres = rng.normal(size=(n_clusters, dim - 1)).astype(np.float32)
    sizes = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    cluster = rng.choice(n_clusters, n_items, p=sizes / sizes.sum())
    items = centres[cluster] + 0.6 * rng.normal(size=(n_items, dim - 1))
    queries = centres[rng.choice(n_clusters, n_queries, p=sizes / sizes.sum())]
    queries = queries + 0.6 * rng.normal(size=(n_queries, dim - 1))
    items = np.concatenate([items, rng.normal(-2.5, 0.3, size=(n_items, 1))], axis=1)
    queries = np.concatenate([queries, np.ones((n_queries, 1))], axis=1)
    return items.astype(np.float32), queries.astype(np.float32)


def model_vectors(model_dir: str, queries_csv: str, n_queries: int, seed: int = 0):
    """A brute-force serving model's catalogue vectors and query vectors of eval rows."""
    import tensorflow as tf

    from modules import columns as C
    from modules import serving

    model = tf.saved_model.load(model_dir)
    items = model.signatures[serving.CATALOGUE_SIGNATURE]()["item_vectors"].numpy()
    columns = C.read_csv_columns(queries_csv)
    rng = np.random.default_rng(seed)
    n = len(next(iter(columns.values())))
    pick = np.sort(rng.choice(n, min(n, n_queries), replace=False))
    signature = model.signatures[serving.QUERY_SIGNATURE]
    spec = signature.structured_input_signature[1]
    parts = []
    for start in range(0, len(pick), 2048):
        rows = pick[start : start + 2048]
        inputs = {
            name: tf.constant(np.asarray(columns[name])[rows].tolist(), dtype=s.dtype)
            for name, s in spec.items()
        }
        parts.append(signature(**inputs)["query"].numpy())
    return items.astype(np.float32), np.concatenate(parts).astype(np.float32)


# ---------------------------------------------------------------- methods
# Each method: build() -> (searcher, memory bytes); batched(queries) -> rows [n, k];
# single(query [d]) -> rows [k].


class Method:
    """A search method at one setting."""

    def __init__(self, name: str, setting: str, batched, single, build_s: float, memory: int):
        self.name, self.setting = name, setting
        self.batched, self.single = batched, single
        self.build_s, self.memory = build_s, memory


def _dir_size(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def exact_methods(items, k, threads) -> list[Method]:
    """numpy, TensorFlow (the ScaNN component's exact timings) and, if installed, Faiss flat."""
    numpy_top, tf_top = index.exact_search(items, k), speed.tf_exact(items, k)

    def batched(top):
        return lambda q: np.concatenate([top(q[s : s + 512]) for s in range(0, len(q), 512)])

    methods = [
        Method(
            "exact numpy",
            "matmul + topk.top_rows, batches of 512",
            batched(numpy_top),
            lambda q: numpy_top(q[None, :])[0],
            0.0,
            items.nbytes,
        ),
        Method(
            "exact TensorFlow",
            "matmul + top_k, batches of 512",
            batched(tf_top),
            lambda q: tf_top(q[None, :])[0],
            0.0,
            items.nbytes,
        ),
    ]
    faiss = _maybe("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(threads)
        start = time.perf_counter()
        flat = faiss.IndexFlatIP(items.shape[1])
        flat.add(items)
        build_s = time.perf_counter() - start
        methods.append(
            Method(
                "Faiss IndexFlatIP",
                "exact",
                lambda q: flat.search(q, k)[1],
                lambda q: flat.search(q[None, :], k)[1][0],
                build_s,
                len(faiss.serialize_index(flat)),
            )
        )
    return methods


def _maybe(module: str):
    try:
        return __import__(module)
    except ImportError:
        print(f"({module} is not installed: skipped)", file=sys.stderr)
        return None


def _cheapest(name, candidates, queries, exact_rows, target, k):
    """Sweeps a method's search settings (cheapest first); keeps the first reaching the target.

    Returns:
      (chosen Method, sweep [(setting, recall)]).
    """
    sweep = []
    for method in candidates:
        recall = index.recall_vs_exact(method.batched(queries), exact_rows)
        sweep.append((method.setting, recall))
        if recall >= target:
            return method, sweep
    print(f"{name}: no setting reached Recall@{k} {target}; keeping the most accurate")
    best = max(range(len(sweep)), key=lambda i: sweep[i][1])
    return candidates[best], sweep


def faiss_ivf(items, queries, exact_rows, k, threads, target):
    faiss = _maybe("faiss")
    if faiss is None:
        return None, []
    faiss.omp_set_num_threads(threads)
    nlist = int(4 * np.sqrt(len(items)))
    start = time.perf_counter()
    quantizer = faiss.IndexFlatIP(items.shape[1])
    ivf = faiss.IndexIVFFlat(quantizer, items.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(items)
    ivf.add(items)
    build_s = time.perf_counter() - start
    memory = len(faiss.serialize_index(ivf))

    def at(nprobe):
        def batched(q):
            ivf.nprobe = nprobe
            return ivf.search(q, k)[1]

        def single(q):
            ivf.nprobe = nprobe
            return ivf.search(q[None, :], k)[1][0]

        return Method(
            "Faiss IVF-Flat", f"nlist {nlist}, nprobe {nprobe}", batched, single, build_s, memory
        )

    return _cheapest(
        "Faiss IVF",
        [at(p) for p in (8, 16, 24, 32, 48, 64, 96, 128, 192, 256)],
        queries,
        exact_rows,
        target,
        k,
    )


def faiss_hnsw(items, queries, exact_rows, k, threads, target, m=32, ef_construction=100):
    faiss = _maybe("faiss")
    if faiss is None:
        return None, []
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(items.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = ef_construction
    hnsw.add(items)
    build_s = time.perf_counter() - start
    memory = len(faiss.serialize_index(hnsw))

    def at(ef):
        def batched(q):
            hnsw.hnsw.efSearch = ef
            return hnsw.search(q, k)[1]

        def single(q):
            hnsw.hnsw.efSearch = ef
            return hnsw.search(q[None, :], k)[1][0]

        return Method(
            "Faiss HNSW",
            f"M {m}, efC {ef_construction}, efSearch {ef}",
            batched,
            single,
            build_s,
            memory,
        )

    return _cheapest(
        "Faiss HNSW",
        [at(ef) for ef in (50, 64, 96, 128, 192, 256, 384, 512)],
        queries,
        exact_rows,
        target,
        k,
    )


def hnswlib_index(items, queries, exact_rows, k, threads, target, m=32, ef_construction=100):
    hnswlib = _maybe("hnswlib")
    if hnswlib is None:
        return None, []
    start = time.perf_counter()
    graph = hnswlib.Index(space="ip", dim=items.shape[1])
    graph.init_index(max_elements=len(items), ef_construction=ef_construction, M=m, random_seed=0)
    graph.set_num_threads(threads)
    graph.add_items(items, np.arange(len(items)))
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        graph.save_index(os.path.join(tmp, "index.bin"))
        memory = _dir_size(tmp)

    def at(ef):
        def batched(q):
            graph.set_ef(ef)
            return graph.knn_query(q, k=k)[0].astype(np.int64)

        def single(q):
            graph.set_ef(ef)
            return graph.knn_query(q[None, :], k=k)[0][0].astype(np.int64)

        return Method(
            "hnswlib", f"M {m}, efC {ef_construction}, ef {ef}", batched, single, build_s, memory
        )

    return _cheapest(
        "hnswlib",
        [at(ef) for ef in (50, 64, 96, 128, 192, 256, 384, 512)],
        queries,
        exact_rows,
        target,
        k,
    )


def scann_tuned(items, queries, k, threads, target):
    """ScaNN tuned by the pipeline's tuner on half the queries (the other half measures it).

    The tuner picks the cheapest configuration by distance computations per query (``index.cost``)
    that reaches the target; this benchmark then measures what that cost buys on this machine.
    """
    half = len(queries) // 2
    start = time.perf_counter()
    chosen, curve = index.tune(items, queries[:half], k=k, target_recall=target, threads=threads)
    tune_s = time.perf_counter() - start
    start = time.perf_counter()
    searcher = index.build_searcher(items, chosen, num_neighbors=k, threads=threads)
    build_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        searcher.serialize(tmp)
        memory = _dir_size(tmp)
    method = Method(
        "ScaNN (tuned)",
        index.describe(chosen),
        lambda q: index.search(searcher, q, k, chosen),
        lambda q: index.search_one(searcher, q, k, chosen),
        build_s,
        memory,
    )
    return method, curve, tune_s, queries[half:]


# ---------------------------------------------------------------- timing


def timed(methods, queries, single_queries, repeats, min_seconds=0.3):
    """Interleaved timing: every repeat runs each method once; medians per method."""
    rates = {id(m): ([], []) for m in methods}
    one = queries[:single_queries]
    for _ in range(repeats):
        for method in methods:
            batched, single = rates[id(method)]
            batched.append(speed.rate(_batched_run(method, queries), 1, min_seconds))
            single.append(speed.rate(_single_run(method, one), 1, min_seconds))
    return {
        key: (statistics.median(batched), statistics.median(single))
        for key, (batched, single) in rates.items()
    }


def _batched_run(method, queries):
    def run():
        method.batched(queries)
        return len(queries)

    return run


def _single_run(method, queries):
    def run():
        for q in queries:
            method.single(q)
        return len(queries)

    return run


# ---------------------------------------------------------------- main


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", choices=("clustered", "model"), default="clustered")
    parser.add_argument("--model", help="brute-force serving model dir (--source model)")
    parser.add_argument("--queries-csv", help="an export's eval/interactions.csv (--source model)")
    parser.add_argument("--items", type=int, default=235_000)
    parser.add_argument("--dim", type=int, default=65, help="embedding size + 1 (the bias)")
    parser.add_argument("--queries", type=int, default=4000)
    parser.add_argument("--single-queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip", default="", help="comma-separated: hnsw,hnswlib,ivf")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    import tensorflow as tf

    # Before TensorFlow's first op (loading a model starts its thread pools).
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)

    if args.source == "model":
        items, queries = model_vectors(args.model, args.queries_csv, args.queries)
        source = f"model {args.model}"
    else:
        items, queries = clustered_vectors(args.items, args.queries, args.dim)
        source = "clustered synthetic"
    print(
        f"{source}: {items.shape[0]:,} items x {items.shape[1]} dims, {len(queries):,} "
        f"queries, k={args.k}, {args.threads} threads, target Recall@{args.k} {args.target}"
    )

    start = time.perf_counter()
    scann, curve, tune_s, held_out = scann_tuned(items, queries, args.k, args.threads, args.target)
    print(f"ScaNN tuning: {len(curve)} configurations in {tune_s:.0f} s; chose {scann.setting}")
    exact_rows = index.exact_top_k(held_out, items, args.k)
    methods = exact_methods(items, args.k, args.threads)
    sweeps = {}
    for name, builder in (("ivf", faiss_ivf), ("hnsw", faiss_hnsw), ("hnswlib", hnswlib_index)):
        if name in skip:
            continue
        t0 = time.perf_counter()
        method, sweep = builder(items, held_out, exact_rows, args.k, args.threads, args.target)
        if method is not None:
            methods.append(method)
            sweeps[method.name] = sweep
            print(
                f"{method.name}: built in {method.build_s:.1f} s, sweep {sweep} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
    methods.append(scann)
    recalls = {id(m): index.recall_vs_exact(m.batched(held_out), exact_rows) for m in methods}
    speeds = timed(methods, held_out, args.single_queries, args.repeats)

    rows = []
    for m in methods:
        qps, single = speeds[id(m)]
        rows.append(
            {
                "method": m.name,
                "setting": m.setting,
                "build_s": m.build_s,
                "memory_mb": m.memory / 2**20,
                f"recall@{args.k}": recalls[id(m)],
                "queries_per_s": qps,
                "single_query_per_s": single,
            }
        )
    exact = [r for r in rows if r["method"].startswith(("exact", "Faiss IndexFlat"))]
    best_batched = max(r["queries_per_s"] for r in exact)
    best_single = max(r["single_query_per_s"] for r in exact)
    print()
    print(_table(rows, args.k, best_batched, best_single))
    scann_row = rows[-1]
    verdict = {
        "speedup_batched": scann_row["queries_per_s"] / best_batched,
        "speedup_single": scann_row["single_query_per_s"] / best_single,
        "recall": scann_row[f"recall@{args.k}"],
    }
    ok = (
        verdict["recall"] >= args.target
        and verdict["speedup_batched"] >= 5
        and verdict["speedup_single"] >= 5
    )
    print(
        f"\nScaNN vs the fastest exact search: {verdict['speedup_batched']:.1f}x batched, "
        f"{verdict['speedup_single']:.1f}x one query at a time, Recall@{args.k} "
        f"{verdict['recall']:.3f} -> target (>= 5x both, recall >= {args.target}) "
        f"{'MET' if ok else 'NOT MET'}; total {time.perf_counter() - start:.0f} s"
    )
    result = {
        "source": source,
        "items": int(items.shape[0]),
        "dim": int(items.shape[1]),
        "queries": len(held_out),
        "k": args.k,
        "threads": args.threads,
        "repeats": args.repeats,
        "rows": rows,
        "scann_curve": curve,
        "sweeps": sweeps,
        "verdict": {**verdict, "met": ok},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return result


def _table(rows, k, best_batched, best_single) -> str:
    lines = [
        f"| method | setting | build s | memory MiB | Recall@{k} | batched q/s | single q/s "
        "| batched vs best exact | single vs best exact |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['setting']} | {r['build_s']:.1f} | {r['memory_mb']:.0f} "
            f"| {r[f'recall@{k}']:.3f} | {r['queries_per_s']:,.0f} | {r['single_query_per_s']:,.0f} "
            f"| {r['queries_per_s'] / best_batched:.1f}x "
            f"| {r['single_query_per_s'] / best_single:.1f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
