"""The ``retailrec`` command: generate data, export it, run the pipeline.

Every subcommand prints a short, readable result; bad input ends with ``error: <file>: <what>`` and
exit status 2, never a traceback.
"""

from __future__ import annotations

import os

# TFRS, TFMA and TFX 1.16 need Keras 2: this must be set before TensorFlow is first imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow reads its C++ log level once, at its first import; `main` sets it per command and -v
# (see _set_verbosity) unless the user did. Importing this module alone keeps C++ errors only.
_USER_TF_CPP_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from modules import constants  # noqa: E402
from modules import features as F  # noqa: E402
from modules.errors import RetailrecError  # noqa: E402
from pipeline import configs  # noqa: E402

EXIT_COMPONENT_FAILED = 1  # a component failed: one line names it; the traceback is in the log
EXIT_BAD_INPUT = 2  # bad input, data anomalies or a row-count mismatch: the message says where
EXIT_NOT_BLESSED = 3  # the pipeline ran, the gate refused the model, nothing was pushed

# google-api-core warns on every import that Python 3.10 is old; TFX 1.16 needs 3.10.
warnings.filterwarnings("ignore", category=FutureWarning, module="google.api_core")


def _add_export_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cutoff",
        default=constants.DEFAULT_CUTOFF,
        help="train = events at or before it (UTC date)",
    )
    parser.add_argument(
        "--sample-items",
        type=int,
        default=None,
        help="keep N items drawn from those ever available=1 (the original protocol used 10000)",
    )
    parser.add_argument("--sample-seed", type=int, default=constants.SAMPLE_ITEMS_SEED)
    parser.add_argument("--history-length", type=int, default=constants.HISTORY_LENGTH)
    parser.add_argument(
        "--min-coverage",
        type=float,
        default=constants.PROPERTY_MIN_COVERAGE,
        help="keep properties present for at least this share of items",
    )


def _add_tune_args(parser: argparse.ArgumentParser) -> None:
    tune = parser.add_mutually_exclusive_group()
    tune.add_argument(
        "--tune-trials",
        type=int,
        default=constants.TUNE_TRIALS,
        metavar="N",
        help="trials of the Tuner on the validation window (trial 1: the defaults; "
        f"default {constants.TUNE_TRIALS}); each costs about one validated fit of the Trainer",
    )
    tune.add_argument(
        "--no-tune",
        action="store_true",
        help="no Tuner: train with the settings an earlier run of this output chose (else the "
        "defaults)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retailrec", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write a synthetic RetailRocket-format raw folder")
    gen.add_argument("--out", required=True)
    gen.add_argument("--preset", default=configs.DEFAULT_GENERATOR_PRESET)
    gen.add_argument("--visitors", type=int)
    gen.add_argument("--items", type=int)
    gen.add_argument("--events", type=int)
    gen.add_argument("--seed", type=int, default=0)

    exp = sub.add_parser("export", help="raw RetailRocket files -> the CSVs ExampleGen reads")
    exp.add_argument(
        "--raw",
        required=True,
        help="folder with events.csv, item_properties*.csv, category_tree.csv",
    )
    exp.add_argument("--out", required=True)
    exp.add_argument(
        "--force", action="store_true", help="replace a folder holding a different export"
    )
    _add_export_args(exp)

    run = sub.add_parser("run", help="export + the whole pipeline (LocalDagRunner)")
    run.add_argument("--raw", required=True)
    run.add_argument("--output", required=True)
    run.add_argument("--epochs", type=int, default=None, help="training epochs of the two-tower")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting (modules/training.py settings, e.g. seed=1, learning_rate=0.001; "
        "VALUE is read as JSON when it parses, else as a string); repeatable",
    )
    _add_tune_args(run)
    run.add_argument(
        "--min-recall",
        type=float,
        default=constants.MIN_RECALL_AT_50,
        help="the gate's absolute floor of Recall@50",
    )
    run.add_argument(
        "--no-baselines",
        action="store_true",
        help="skip the Baselines component (the gate then has no baseline bar)",
    )
    run.add_argument(
        "--exclude-seen",
        action="store_true",
        help="drop items the visitor had in train (all models)",
    )
    run.add_argument(
        "--force", action="store_true", help="replace a different export in OUTPUT/export"
    )
    run.add_argument(
        "--beam-mode",
        choices=configs.LOCAL_BEAM_MODES,
        default=configs.LOCAL_BEAM_MODE,
        help="Beam DirectRunner mode; auto: in_memory below "
        f"{configs.LOCAL_BEAM_MULTI_PROCESSING_MIN_TRAIN_ROWS:,} train events, else multi_processing",
    )
    run.add_argument(
        "--beam-workers",
        type=int,
        default=configs.LOCAL_BEAM_WORKERS,
        help="worker processes/threads of multi_processing/multi_threading",
    )
    _add_export_args(run)
    rec = sub.add_parser("recommend", help="top-K items for a visitor from a pushed model")
    rec.add_argument(
        "--model", required=True, help="OUTPUT/serving/retailrec (or a version folder)"
    )
    rec.add_argument("--visitor", type=int, default=0)
    rec.add_argument(
        "--history", help="ITEM,ITEM,... most recent first: a visitor the model never saw"
    )
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--export", help="the export folder (default: OUTPUT/export beside the model)")
    rec.add_argument("--exclude", help="ITEM,ITEM,... never to recommend (e.g. the cart)")
    rec.add_argument(
        "--available-only",
        action="store_true",
        help="drop items unavailable at the cutoff (unknown availability counts as available)",
    )

    stats = sub.add_parser("stats", help="HTML page of a run's TFDV statistics and anomalies")
    stats.add_argument("--output", required=True, help="the output folder of `retailrec run`")
    stats.add_argument("--html", required=True, help="the page to write")

    comp = sub.add_parser(
        "compile", help="compile the pipeline for Kubeflow v2 / Vertex AI Pipelines"
    )
    comp.add_argument("--engine", choices=["vertex"], default="vertex")
    comp.add_argument("--out", required=True, help="the pipeline spec JSON to write")
    comp.add_argument("--config", help="JSON file with any of the settings below (flags win)")
    for name in ("project", "region", "image", "pipeline-root", "export-dir", "temp-location"):
        comp.add_argument(f"--{name}")
    comp.add_argument(
        "--raw-dir",
        help="gs:// folder of the uploaded raw RetailRocket files: the pipeline's first step "
        "exports them (into --export-dir, default PIPELINE_ROOT/export)",
    )
    comp.add_argument("--max-workers", type=int)
    comp.add_argument("--machine-type")
    comp.add_argument("--schema-path")
    comp.add_argument(
        "--training-machine-type",
        help="run the Tuner and the Trainer as Vertex AI custom jobs on this machine type (e.g. "
        "n1-standard-8)",
    )
    comp.add_argument("--training-accelerator-type", help="e.g. NVIDIA_TESLA_T4")
    comp.add_argument("--training-accelerator-count", type=int)
    comp.add_argument("--exclude-seen", action="store_true")
    comp.add_argument("--epochs", type=int, default=None, help="training epochs of the two-tower")
    comp.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training setting, as for `retailrec run`; repeatable",
    )
    _add_tune_args(comp)
    comp.add_argument("--min-recall", type=float, default=constants.MIN_RECALL_AT_50)
    comp.add_argument("--no-baselines", action="store_true")
    _add_export_args(comp)
    comp.add_argument(
        "--check",
        action="store_true",
        help="then run the spec's tasks here as Vertex would (local root, tiny generated data)",
    )
    comp.add_argument(
        "--check-only",
        action="store_true",
        help="only run --check on the spec already at --out (compiled elsewhere)",
    )
    comp.add_argument(
        "--check-dir", help="the check's local storage and logs (default: a temporary folder)"
    )
    return parser


def _export_kwargs(args: argparse.Namespace) -> dict:
    return {
        "cutoff": args.cutoff,
        "sample_items": args.sample_items,
        "sample_seed": args.sample_seed,
        "history_length": args.history_length,
        "min_coverage": args.min_coverage,
        "force": args.force,
    }


def format_export_summary(summary: dict) -> str:
    """A few lines that tell a user what the export read, kept and dropped."""
    ev, pr, sp = summary["events"], summary["properties"], summary["split"]
    lines = [
        f"events: {ev['rows_read']:,} read, {ev['dropped_duplicates']:,} duplicates dropped",
        f"property rows: {pr['rows_read']:,} read for {pr['items_with_properties']:,} items and "
        f"{pr['property_names']:,} names; kept numeric {pr['numeric']} and text {pr['text']}",
        f"cutoff {sp['cutoff']}: train {sp['n_train']:,} events ({sp['train_visitors']:,} visitors, "
        f"{sp['train_items']:,} items); eval {sp['n_eval_queries']:,} queries "
        f"({sp['eval_visitors']:,} visitors), {sp['dropped_eval_events_of_visitors_unseen_in_train']:,} "
        "eval events of visitors unseen in train dropped",
        f"catalogue: {sp['n_items']:,} items ({sp['catalogue_items_without_train_events']:,} without "
        f"train events); eval targets not in train: {sp['eval_targets_not_in_train']:,}, "
        f"seen by the visitor in train: {sp['eval_targets_seen_by_visitor_in_train']:,}",
    ]
    if "sampling" in summary:
        sa = summary["sampling"]
        lines.append(
            f"item sample: {sa['items']:,} of {sa['pool_ever_available']:,} ever-available items "
            f"(seed {sa['seed']}), {sa['dropped_events_not_sampled']:,} events dropped"
        )
    return "\n".join(lines)


def _cmd_generate(args: argparse.Namespace) -> int:
    from data import generator

    sizes = {k: getattr(args, k) for k in ("visitors", "items", "events") if getattr(args, k)}
    counts = generator.generate(args.out, preset=args.preset, seed=args.seed, **sizes)
    print(json.dumps(counts, indent=2, default=str))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from components.export import export
    from pipeline import progress

    with progress.step_lines("[export]   "):
        summary = export.export(args.raw, args.out, **_export_kwargs(args))
    state = "reused (inputs and parameters unchanged)" if summary["reused"] else "written"
    print(f"export {state}: {args.out}")
    print(format_export_summary(summary))
    return 0


def training_settings(pairs: list[str]) -> dict:
    """``--set KEY=VALUE`` flags as a dict; VALUE as JSON when it parses (1, 0.5, true), else text.

    Raises:
      RetailrecError: a flag without ``=`` or a key that is not a training setting.
    """
    from modules import training

    known = training.settings()
    out: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in known:
            raise RetailrecError(
                f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(known))}"
            )
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _pipeline_kwargs(args: argparse.Namespace) -> dict:
    """create_pipeline keyword arguments from the ``run`` flags."""
    kwargs: dict = {"exclude_seen": args.exclude_seen, "min_recall": args.min_recall}
    config = training_settings(args.set)
    if args.epochs is not None:
        config["epochs"] = args.epochs
    if config:
        kwargs["training_config"] = config
    if args.no_baselines:
        kwargs["baselines"] = ()
    if not args.no_tune and args.tune_trials < 1:
        raise RetailrecError(
            f"--tune-trials {args.tune_trials}: give 1 or more (trial 1 is the defaults), or "
            "--no-tune to skip the Tuner"
        )
    kwargs["tune_trials"] = 0 if args.no_tune else args.tune_trials
    return kwargs


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline import lock

    out = Path(args.output).resolve()
    with lock.hold(str(out)):
        return _run_locked(args, out)


def _run_locked(args: argparse.Namespace, out: Path) -> int:
    from components.export import export
    from modules import memory
    from pipeline import progress

    with progress.step_lines("[export]   "):
        summary = export.export(args.raw, out / "export", **_export_kwargs(args))
    memory.release()  # DuckDB's working memory, before the pipeline starts in this process
    state = "reused" if summary["reused"] else "written"
    print(f"[export] {state}: {out / 'export'}")
    print(format_export_summary(summary))

    log_file = str(out / "logs" / "run.log")
    print(f"[pipeline] running the TFX pipeline (LocalDagRunner); logs: {log_file}", flush=True)
    failure = None
    with progress.pipeline_logging(log_file, quiet=not args.verbose) as components:
        # Imported here: TensorFlow's import-time noise goes to the log file too.
        from pipeline import local_runner
        from reporting import report, results

        mode = local_runner.beam_mode(args.beam_mode, summary["split"]["n_train"])
        workers = local_runner.beam_workers(mode, args.beam_workers)
        print(f"[pipeline] Beam DirectRunner: {mode}, {workers} worker(s)", flush=True)
        where = local_runner.paths(out)
        beam = local_runner.beam_args(mode, workers)
        try:
            local_runner.run(out, beam_pipeline_args=beam, **_pipeline_kwargs(args))
        except Exception as err:
            # The traceback goes to the log; the terminal gets one line (main prints a
            # RetailrecError's own message: bad data, anomalies, a row-count mismatch).
            failed = components.running or "the pipeline"
            logging.getLogger(__name__).exception("%s failed", failed)
            if isinstance(err, RetailrecError):
                raise
            first = (str(err).strip().splitlines() or [""])[0][:300]
            failure = f"error: {failed} failed: {type(err).__name__}: {first}"
    if failure:
        # After the with block: descriptor 2 is the terminal again.
        print(f"{failure}\n       traceback: {log_file}", file=sys.stderr)
        return EXIT_COMPONENT_FAILED
    with progress.pipeline_logging(log_file, quiet=not args.verbose):
        nodes = results.latest_run(results.open_store(where["metadata"]), configs.PIPELINE_NAME)
        run = results.collect(nodes, summary, exclude_seen=args.exclude_seen)
        results.write_json(where["metrics"], run.metrics)
        page = report.build_html(run, summary, str(out))
        report.write(where["report"], page)
    states = sorted({r.state for r in nodes.values()})
    counts = ", ".join(f"{sum(r.state == s for r in nodes.values())} {s}" for s in states)
    print(f"[pipeline] {len(nodes)} components: {counts}")
    if ann := run.metrics.get("ann"):
        print(
            f"[ann] ScaNN {ann['config_name']}: Recall@50 vs exact {ann['recall_vs_exact@50']:.3f}, "
            f"{ann['scann_queries_per_s']:,.0f} queries/s vs exact {ann['exact_queries_per_s']:,.0f} "
            f"({ann['speedup']:.1f}x batched, {ann['single_query_speedup']:.1f}x one at a time)"
        )
    print(results.format_counts(run.metrics["counts"]))
    if tuning := results.format_tuning(run.metrics.get("tuning")):
        print(tuning)
    for line in run.gate_reasons:
        print(f"[gate] {line}")
    if comparisons := run.metrics.get("comparisons"):
        print(results.format_comparisons(comparisons))
    print()
    print(results.format_table(run.metrics["models"]))
    if slices := results.format_slices(run.metrics["models"]):
        print()
        print(slices)
    print(f"\nmetrics: {where['metrics']}\nreport:  {where['report']}")
    if run.metrics["blessed"]:
        if run.metrics.get("pushed_new_version") is False:
            print(
                f"[push] blessed; TF Serving already serves this model: {run.metrics['pushed_to']}"
            )
        else:
            print(f"[push] blessed and pushed to {run.metrics['pushed_to']}")
        if run.metrics.get("pushed_scann_to"):
            if run.metrics.get("pushed_scann_new_version") is False:
                print(f"[push] ScaNN variant already served: {run.metrics['pushed_scann_to']}")
            else:
                print(f"[push] ScaNN variant pushed to {run.metrics['pushed_scann_to']}")
        return 0
    print("[push] NOT blessed: nothing was pushed; the previously pushed model is unchanged")
    return EXIT_NOT_BLESSED


def _item_list(flag: str, text: str) -> list[int]:
    """``ITEM,ITEM,...`` -> item ids; a bad one is a one-line error naming the flag."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise RetailrecError(f"{flag}: {text!r} is not a list of item ids") from err


def _cmd_recommend(args: argparse.Namespace) -> int:
    import time

    from reporting import recommend

    model = Path(args.model).resolve()
    export_dir = args.export or str(
        next((p / "export" for p in model.parents if (p / "export").is_dir()), model / "export")
    )
    now = int(time.time() * 1000)
    if args.history is not None:
        items = _item_list("--history", args.history)
        state = recommend.history_state(args.visitor, items, now)
    else:
        state = recommend.visitor_state(export_dir, args.visitor)
    exclude = _item_list("--exclude", args.exclude or "")
    ranked = recommend.recommend(
        str(model), state, args.k, now, exclude=exclude, available_only=args.available_only
    )
    info = recommend.describe(export_dir, [i for i, _ in ranked])
    filters = (f"; excluded: {' '.join(map(str, exclude))}" if exclude else "") + (
        "; available items only" if args.available_only else ""
    )
    print(f"visitor {args.visitor}, history: {state[F.HISTORY] or '(none)'}{filters}")
    for rank, (item, score) in enumerate(ranked, start=1):
        row = info.get(item, {})
        extras = ", ".join(
            f"{k}={row[k]:g}" for k in sorted(row) if k.startswith("num_") and row[k] == row[k]
        )[:60]
        print(
            f"{rank:3d}. item {item:<8d} score {score:8.4f}  category {row.get('categoryid', '?')} "
            f"available {row.get('available', '?')}  {extras}"
        )
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from reporting import stats_report

    print(f"TFDV statistics page written: {stats_report.write(args.output, args.html)}")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from pipeline import vertex_runner

    if args.check_only:
        return _check_spec(args.out, args.check_dir)
    settings = json.loads(Path(args.config).read_text()) if args.config else {}
    for name in (
        "project",
        "region",
        "image",
        "pipeline_root",
        "raw_dir",
        "export_dir",
        "temp_location",
        "max_workers",
        "machine_type",
        "schema_path",
        "training_machine_type",
        "training_accelerator_type",
        "training_accelerator_count",
    ):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    try:
        vertex = vertex_runner.VertexSettings(**settings)
        vertex.validate()
    except (TypeError, ValueError) as err:
        raise RetailrecError(f"compile: {err}") from err
    export_config = {
        "cutoff": args.cutoff,
        "sample_items": args.sample_items,
        "sample_seed": args.sample_seed,
        "history_length": args.history_length,
        "min_coverage": args.min_coverage,
    }
    kwargs = {**_pipeline_kwargs(args), "export_config": export_config}
    try:
        vertex_runner.compile_pipeline(vertex, args.out, **kwargs)
    except ValueError as err:
        raise RetailrecError(f"compile: {err}") from err
    print(f"pipeline spec written: {args.out}")
    return _check_spec(args.out, args.check_dir) if args.check else 0


def _check_spec(spec: str, check_dir: str | None) -> int:
    """Runs a compiled spec's tasks here as Vertex would (``pipeline/vertex_check.py``)."""
    import shutil
    import tempfile

    from pipeline import vertex_check

    work = check_dir or tempfile.mkdtemp(prefix="retailrec-vertex-check-")
    print(f"[check] running {spec} as Vertex would, storage and logs under {work}", flush=True)
    # A failed task raises a CheckError naming its log: the folder stays for the post-mortem.
    result = vertex_check.check(spec, work, log=lambda line: print(line, flush=True))
    print(result.summary())
    if check_dir is None:
        shutil.rmtree(work, ignore_errors=True)
        print("[check] the temporary folder is removed; keep it with --check-dir")
    if not result.pushed:
        print(
            "[check] every task ran, but the gate refused the model trained on the check's tiny "
            "data, so nothing was pushed; a spec compiled with --no-baselines --min-recall 0 "
            "clears the gate on it"
        )
        return EXIT_NOT_BLESSED
    return 0


# Libraries whose Python logging is only shown with -v (their warnings are not the command's output).
_LIBRARY_LOGGERS = ("absl", "tensorflow", "apache_beam", "tfx", "ml_metadata", "h5py", "jax")


def _set_verbosity(command: str, verbose: bool, owns_process: bool) -> None:
    """Every command prints only its own output, unless -v.

    Without -v, TensorFlow's C++ log lines are dropped (the cuDNN/cuBLAS/cuFFT factory registration
    messages are logged at ERROR level, so TF_CPP_MIN_LOG_LEVEL=3), and so are the libraries'
    Python warnings and their log records below ERROR. ``run`` keeps C++ errors and the libraries'
    warnings: while the pipeline runs, they go to OUTPUT/logs/run.log, not to the terminal
    (``progress.pipeline_logging``). With -v everything is shown. The warning filters and library
    log levels are process-wide: they are set only when ``main`` runs as the program
    (``owns_process``), so that callers of ``main`` in the same process (tests) keep their own.
    """
    if _USER_TF_CPP_LOG_LEVEL is None:
        level = "0" if verbose else "2" if command == "run" else "3"
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = level
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if verbose or command == "run" or not owns_process:
        return
    warnings.simplefilter("ignore")  # deprecation and version notices of the libraries
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``retailrec`` console script."""
    args = _parser().parse_args(argv)
    _set_verbosity(args.command, args.verbose, owns_process=argv is None)
    commands = {
        "generate": _cmd_generate,
        "export": _cmd_export,
        "run": _cmd_run,
        "compile": _cmd_compile,
        "stats": _cmd_stats,
        "recommend": _cmd_recommend,
    }
    try:
        code = commands[args.command](args)
    except RetailrecError as err:  # bad input: the message names the file, column and value
        if args.verbose:
            logging.exception("retailrec %s failed", args.command)
        print(f"error: {err}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    if argv is None and args.command == "recommend":
        _exit_without_teardown(code)
    return code


def _exit_without_teardown(code: int) -> None:
    """Ends a one-shot ``recommend`` process at once.

    Tearing down TensorFlow and the loaded SavedModel at interpreter exit takes about 1 s (a fifth
    of the command's time) after the answer is printed; ``recommend`` writes no file, so once its
    output is flushed there is nothing left to finish. Only when run as a program (``argv`` None):
    callers of ``main`` in the same process get the exit status back.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
