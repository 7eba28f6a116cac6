"""Runs a compiled Vertex AI (Kubeflow Pipelines v2) spec on this machine, task by task, as Vertex does.

``retailrec compile --check`` calls ``check`` on the spec it just wrote. Every task of the spec's
DAG runs in DAG order, each container task in its own subprocess with the command and arguments
the spec gives it, fed the ``ExecutorInput`` Vertex would build: its parameters, its input
artifacts (the upstream tasks' outputs, with the metadata their executors reported), its output
artifacts' URIs under the pipeline root, and the executor output file. Placeholders (``{{$}}``) are
resolved with kfp's own ``kfp.local`` helpers. After the last task the check reads the blessing and
the pushed models.

What stands in for the cloud, and nothing else is changed:

- storage: every ``gs://`` URI of the spec is a folder under ``WORK/gcs/`` (``gs://b/x`` ->
  ``WORK/gcs/b/x``), the pipeline root included; task folders are named like Vertex's
  (``ROOT/<job id>/<task>_<id>/<output key>``);
- the image: the container command's ``python`` is this interpreter, with the project that runs
  the check on ``PYTHONPATH`` and as the working directory (the image's ``/retailrec``) and
  ``TF_USE_LEGACY_KERAS=1`` (the image's ``ENV``);
- Dataflow: the Beam arguments keep everything but ``--runner=DataflowRunner``, which becomes the
  DirectRunner (in_memory, one worker);
- Vertex's system tasks: an importer yields its artifact (URI and metadata from the spec); a
  resolver (ML Metadata query) yields nothing, which is what a first run on a new pipeline root
  gets; the ExampleGen driver (``lifecycle.preCacheCheck``) runs before its executor, with the
  same input, and its output file is left for the executor, as Vertex does; nothing is cached;
- the data: the raw folder the spec imports (or, for a spec without the Export step, the export
  folder CsvExampleGen reads) is filled with tiny generated data unless it holds data already.

It proves that the spec's tasks, wired as the spec wires them, run the project's code to a
blessed, pushed model: executor class paths, artifact types, parameters and their types, module
paths (``modules.trainer.run_fn``), the schema and every other file a task reads (none from the
machine that compiled the spec), custom properties passed between tasks. It cannot prove what
only Google Cloud has: the image (its packages and entry point), IAM and bucket permissions,
Dataflow workers (the ``sdk_container_image``, staging, quotas), Vertex's ML Metadata queries
and cache, and the Tuner and the Trainer as Vertex AI custom jobs, which the check refuses to
stand in for.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format, struct_pb2
from kfp.local import executor_output_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2

from components import artifacts as artifact_files
from modules import features as F
from modules.errors import RetailrecError

# The project whose code the tasks run: the one this module belongs to (the image's /retailrec).
PROJECT_ROOT = Path(__file__).resolve().parents[1]
STORAGE_SUBDIR = "gcs"  # WORK/gcs/<bucket>/... stands in for gs://<bucket>/...
LOGS_SUBDIR = "logs"
DIRECT_RUNNER_ARGS = (
    "--runner=DirectRunner",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
)
_DATAFLOW_RUNNER = "--runner=DataflowRunner"
_EXAMPLE_GEN = "CsvExampleGen"
_RAW_DATA_TITLE = "retailrec.RawData"
_BLESSING_TITLE = "tfx.ModelBlessing"
_PUSHED_MODEL_TITLE = "tfx.PushedModel"
_EVALUATION_TITLE = "tfx.ModelEvaluation"
# Artifacts stored in a file at their URI, not a folder (tfx.types.value_artifact).
_VALUE_TITLES = {"tfx.String", "tfx.Integer", "tfx.Float", "tfx.Boolean", "tfx.JsonValue"}
_LOG_TAIL_LINES = 15


class CheckError(RetailrecError):
    """The spec cannot be run here, or one of its tasks failed (the message says which)."""


@dataclass
class TaskRun:
    """One executed task: what kind, how long, what it produced."""

    name: str
    kind: str  # "container", "importer" or "resolver"
    seconds: float
    outputs: dict[str, list[dict]] = field(default_factory=dict)  # key -> RuntimeArtifacts
    parameters: dict[str, Any] = field(default_factory=dict)  # output parameters
    log: str | None = None


@dataclass
class CheckResult:
    """What ``check`` ran and found."""

    storage: str
    tasks: list[TaskRun]
    blessed: bool
    pushed_to: dict[str, str]  # pusher task -> local folder of the pushed version
    not_pushed: list[str]  # pusher tasks that pushed nothing
    gate_reasons: list[str] = field(default_factory=list)  # the RetrievalEvaluator's

    @property
    def pushed(self) -> bool:
        """True when the model was blessed and every pusher pushed it."""
        return self.blessed and bool(self.pushed_to) and not self.not_pushed

    def summary(self) -> str:
        """A few lines: tasks run, the gate's decision, where the models were pushed."""
        kinds = {
            k: sum(t.kind == k for t in self.tasks) for k in ("container", "importer", "resolver")
        }
        lines = [
            f"[check] {len(self.tasks)} tasks ran as Vertex would ({kinds['container']} "
            f"containers, {kinds['importer']} importers, {kinds['resolver']} resolvers) in "
            f"{sum(t.seconds for t in self.tasks):.0f} s; storage: {self.storage}",
            f"[check] blessed: {'yes' if self.blessed else 'NO'}",
            *(f"[gate] {reason}" for reason in self.gate_reasons),
        ]
        lines += [f"[check] {task} pushed {path}" for task, path in sorted(self.pushed_to.items())]
        lines += [f"[check] {task} pushed NOTHING" for task in self.not_pushed]
        return "\n".join(lines)


def local_storage(work_dir: str | os.PathLike) -> str:
    """The folder that stands in for ``gs://`` under ``work_dir``."""
    return str(Path(work_dir).resolve() / STORAGE_SUBDIR)


def to_local(spec_text: str, storage: str) -> str:
    """The spec with every ``gs://`` URI moved under ``storage``."""
    return spec_text.replace("gs://", f"{storage.rstrip('/')}/")


def dependencies(tasks: dict[str, dict]) -> dict[str, set[str]]:
    """Each task's upstream tasks: ``dependentTasks`` and the producers of its inputs.

    Raises:
      CheckError: a task depends on a task the spec does not have.
    """
    needs: dict[str, set[str]] = {}
    for name, task in tasks.items():
        deps = set(task.get("dependentTasks", []))
        inputs = task.get("inputs", {})
        for kind in ("artifacts", "parameters"):
            for key, spec in inputs.get(kind, {}).items():
                producer = (
                    spec.get("taskOutputArtifact") or spec.get("taskOutputParameter") or {}
                ).get("producerTask")
                if producer:
                    deps.add(producer)
                    if producer not in tasks:
                        raise CheckError(
                            f"task {name!r} reads {kind[:-1]} {key!r} of task {producer!r}, "
                            f"which the spec does not have (tasks: {sorted(tasks)})"
                        )
        missing = deps - set(tasks)
        if missing:
            raise CheckError(f"task {name!r} depends on {sorted(missing)}, not tasks of the spec")
        needs[name] = deps
    return needs


def dag_order(tasks: dict[str, dict]) -> list[str]:
    """The tasks in an order Vertex may run them: every task after all it depends on.

    Ties are broken by name, so the order is reproducible.

    Raises:
      CheckError: a task depends on a task the spec does not have, or on itself through a cycle.
    """
    needs = dependencies(tasks)
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in done and needs[n] <= done)
        if not ready:
            raise CheckError(f"the tasks {sorted(set(tasks) - done)} depend on each other")
        order.append(ready[0])
        done.add(ready[0])
    return order


def _title(artifact_type: dict) -> str:
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    first = artifact_type.get("instanceSchema", "").splitlines()[:1]
    return first[0].split(":", 1)[1].strip() if first and first[0].startswith("title:") else ""


def _constant(value_spec: dict) -> Any:
    """A parameter's constant as Python: ``constantValue`` (spec 2.0) or ``constant`` (2.1)."""
    if "constantValue" in value_spec:
        (kind, value), *_ = value_spec["constantValue"].items()
        return {"intValue": int, "doubleValue": float}.get(kind, str)(value)
    return value_spec["constant"]


def _to_values(value: Any) -> tuple[pipeline_spec_pb2.Value, struct_pb2.Value]:
    """A parameter in both ExecutorInput fields: ``parameters`` (TFX's spec 2.0 reads it) and
    ``parameter_values``."""
    legacy = pipeline_spec_pb2.Value()
    struct = struct_pb2.Value()
    if isinstance(value, bool) or not isinstance(value, int | float):
        if not isinstance(value, str):
            value = json.dumps(value)
        legacy.string_value = value
        struct.string_value = value
    elif isinstance(value, int):
        legacy.int_value = value
        struct.number_value = value
    else:
        legacy.double_value = value
        struct.number_value = value
    return legacy, struct


def _beam_here(args: list[str]) -> list[str]:
    """The spec's arguments with the DirectRunner in place of Dataflow."""
    if _DATAFLOW_RUNNER not in args:
        return list(args)
    out = [a for a in args if a != _DATAFLOW_RUNNER]
    return out + list(DIRECT_RUNNER_ARGS)


def _refuse_what_cannot_run_here(spec: dict) -> None:
    for label, executor in spec["deploymentSpec"]["executors"].items():
        args = json.dumps(executor.get("container", {}))
        if "google_cloud_ai_platform" in args:
            raise CheckError(
                f"{label}: the spec tunes or trains as a Vertex AI custom job, which only Vertex "
                "can run; check the spec compiled without --training-machine-type (the rest of "
                "the spec is the same)"
            )
    for name, task in spec["root"]["dag"]["tasks"].items():
        for unsupported in ("triggerPolicy", "iteratorPolicy", "parameterIterator"):
            if unsupported in task:
                raise CheckError(f"task {name!r}: {unsupported} is not supported by the check")


def _place_data(spec: dict, raw_dir: str | None, work: Path, log: Callable[[str], None]) -> None:
    """Puts raw data where the spec imports it (or an export where CsvExampleGen reads it)."""
    from components.export import export
    from data import generator

    def fill_raw(target: Path) -> None:
        if (target / F.RAW_EVENTS_FILE).is_file():
            log(f"[check] raw data already in {target}")
        elif raw_dir:
            shutil.copytree(raw_dir, target, dirs_exist_ok=True)
            log(f"[check] raw data copied from {raw_dir} to {target}")
        else:
            generator.generate(target, preset="tiny", seed=0)
            log(f"[check] tiny raw data generated in {target}")

    for executor in spec["deploymentSpec"]["executors"].values():
        importer = executor.get("importer")
        if importer and _title(importer["typeSchema"]) == _RAW_DATA_TITLE:
            fill_raw(Path(_constant(importer["artifactUri"])))
            return
    # A spec without the Export step reads an export that must be there already.
    task = spec["root"]["dag"]["tasks"].get(_EXAMPLE_GEN)
    if task is None:
        raise CheckError(f"the spec has neither an Export step nor a {_EXAMPLE_GEN} task")
    export_dir = Path(_constant(task["inputs"]["parameters"]["input_base"]["runtimeValue"]))
    if (export_dir / F.EXPORT_SUMMARY_FILE).is_file():
        log(f"[check] export already in {export_dir}")
        return
    fill_raw(work / "raw")
    export.export(work / "raw", export_dir)
    log(f"[check] exported {work / 'raw'} into {export_dir} (the spec has no Export step)")


class _Run:
    """The state of one check: the spec (local URIs), the outputs of the tasks run so far."""

    def __init__(self, spec: dict, root: str, work: Path, log: Callable[[str], None]):
        self.spec = spec
        self.root = root
        self.work = work
        self.log = log
        self.job_id = f"{spec['pipelineInfo']['name']}-{time.strftime('%Y%m%d%H%M%S')}"
        self.done: dict[str, TaskRun] = {}
        self.env = {
            **os.environ,
            "TF_USE_LEGACY_KERAS": "1",
            "PYTHONPATH": os.pathsep.join(
                [str(PROJECT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }

    # ------------------------------------------------------------------ inputs and outputs
    def _input_artifacts(self, task: dict) -> dict[str, list[dict]]:
        result = {}
        for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
            source = spec.get("taskOutputArtifact")
            if source is None:
                raise CheckError(f"input artifact {key!r}: only task outputs are supported")
            producer = self.done[source["producerTask"]]
            result[key] = producer.outputs.get(source["outputArtifactKey"], [])
        return result

    def _input_parameters(self, name: str, task: dict) -> dict[str, Any]:
        result = {}
        for key, spec in task.get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in spec:
                result[key] = _constant(spec["runtimeValue"])
            elif "taskOutputParameter" in spec:
                source = spec["taskOutputParameter"]
                outputs = self.done[source["producerTask"]].parameters
                if source["outputParameterKey"] not in outputs:
                    raise CheckError(
                        f"task {name!r}: parameter {key!r} reads output "
                        f"{source['outputParameterKey']!r} of {source['producerTask']!r}, which "
                        "it did not write"
                    )
                result[key] = outputs[source["outputParameterKey"]]
            else:
                raise CheckError(f"task {name!r}: parameter {key!r} ({spec}) is not supported")
        return result

    def _executor_input(
        self, name: str, task: dict, component: dict, task_root: str
    ) -> pipeline_spec_pb2.ExecutorInput:
        executor_input = pipeline_spec_pb2.ExecutorInput()
        for key, value in self._input_parameters(name, task).items():
            legacy, struct = _to_values(value)
            executor_input.inputs.parameters[key].CopyFrom(legacy)
            executor_input.inputs.parameter_values[key].CopyFrom(struct)
        for key, artifacts in self._input_artifacts(task).items():
            target = executor_input.inputs.artifacts[key]
            target.SetInParent()  # an input with no artifacts (a resolver found none) is there
            for artifact in artifacts:
                json_format.ParseDict(artifact, target.artifacts.add())
        outputs = component.get("outputDefinitions", {})
        for key, definition in outputs.get("artifacts", {}).items():
            uri = f"{task_root}/{key}"
            artifact = executor_input.outputs.artifacts[key].artifacts.add()
            artifact.name = f"local/{self.job_id}/artifacts/{name}.{key}"
            artifact.uri = uri
            json_format.ParseDict(definition["artifactType"], artifact.type)
            # GCS needs no folders; a local folder must exist before an executor writes into it.
            title = _title(definition["artifactType"])
            os.makedirs(uri if title not in _VALUE_TITLES else task_root, exist_ok=True)
        for key in outputs.get("parameters", {}):
            executor_input.outputs.parameters[key].output_file = f"{task_root}/{key}"
        executor_input.outputs.output_file = f"{task_root}/executor_output.json"
        return executor_input

    # ------------------------------------------------------------------ the three kinds of task
    def _importer(self, name: str, component: dict, importer: dict) -> TaskRun:
        (key,) = component["outputDefinitions"]["artifacts"]
        artifact = {
            "name": f"local/{self.job_id}/artifacts/{name}.{key}",
            "type": importer["typeSchema"],
            "uri": _constant(importer["artifactUri"]),
            "metadata": importer.get("metadata", {}),
        }
        return TaskRun(name, "importer", 0.0, outputs={key: [artifact]})

    def _resolver(self, name: str, component: dict) -> TaskRun:
        keys = component.get("outputDefinitions", {}).get("artifacts", {})
        return TaskRun(name, "resolver", 0.0, outputs={key: [] for key in keys})

    def _command(self, command: list[str], args: list[str]) -> list[str]:
        full = list(command) + _beam_here(args)
        if full and full[0] in ("python", "python3"):
            full[0] = sys.executable
        return full

    def _run_process(self, name: str, full: list[str], log_path: Path, stage: str) -> None:
        with open(log_path, "a") as log_file:
            log_file.write(f"\n===== {stage}: {' '.join(full)[:2000]}\n")
            log_file.flush()
            code = subprocess.call(
                full, cwd=PROJECT_ROOT, env=self.env, stdout=log_file, stderr=subprocess.STDOUT
            )
        if code != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
            raise CheckError(
                f"task {name!r} failed ({stage}, exit status {code}); log: {log_path}\n    "
                + "\n    ".join(tail)
            )

    def _container(self, name: str, task: dict, component: dict, executor: dict) -> TaskRun:
        started = time.time()
        task_root = f"{self.root}/{self.job_id}/{name}_{uuid.uuid4().hex[:12]}"
        os.makedirs(task_root, exist_ok=True)
        executor_input = self._executor_input(name, task, component, task_root)
        log_path = self.work / LOGS_SUBDIR / f"{name}.log"
        container = executor["container"]

        def resolved(command: list[str], args: list[str]) -> list[str]:
            return placeholder_utils.replace_placeholders(
                full_command=self._command(command, args),
                executor_input_dict=json_format.MessageToDict(executor_input),
                pipeline_resource_name=self.job_id,
                task_resource_name=name,
                pipeline_root=self.root,
            )

        pre = container.get("lifecycle", {}).get("preCacheCheck")
        if pre:
            # Vertex runs the driver first and applies its output (span, fingerprint, the
            # examples' properties) before the executor, which reads the same output file.
            self._run_process(
                name, resolved(pre.get("command", []), pre.get("args", [])), log_path, "driver"
            )
            driven = executor_output_utils.load_executor_output(executor_input.outputs.output_file)
            for key, artifacts in driven.artifacts.items():
                for mine, theirs in zip(
                    executor_input.outputs.artifacts[key].artifacts,
                    artifacts.artifacts,
                    strict=False,
                ):
                    mine.metadata.update(json_format.MessageToDict(theirs.metadata))
        self._run_process(
            name,
            resolved(container.get("command", []), container.get("args", [])),
            log_path,
            "executor",
        )
        output = executor_output_utils.load_executor_output(executor_input.outputs.output_file)
        outputs = {}
        for key, expected in executor_input.outputs.artifacts.items():
            reported = output.artifacts[key].artifacts if key in output.artifacts else []
            artifacts = []
            for index, artifact in enumerate(expected.artifacts):
                merged = pipeline_spec_pb2.RuntimeArtifact()
                merged.CopyFrom(artifact)
                if index < len(reported):  # the executor's URI and metadata, the spec's type
                    merged.uri = reported[index].uri or artifact.uri
                    merged.metadata.update(json_format.MessageToDict(reported[index].metadata))
                artifacts.append(json_format.MessageToDict(merged))
            outputs[key] = artifacts
        parameters = {
            key: json_format.MessageToDict(value) for key, value in output.parameter_values.items()
        }
        return TaskRun(
            name, "container", time.time() - started, outputs, parameters, log=str(log_path)
        )

    def run_task(self, name: str) -> TaskRun:
        """Runs one task (its inputs' producers ran already) and records its outputs."""
        task = self.spec["root"]["dag"]["tasks"][name]
        component = self.spec["components"][task["componentRef"]["name"]]
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        if "importer" in executor:
            result = self._importer(name, component, executor["importer"])
        elif "resolver" in executor:
            result = self._resolver(name, component)
        elif "container" in executor:
            result = self._container(name, task, component, executor)
        else:
            raise CheckError(f"task {name!r}: executor kind {sorted(executor)} is not supported")
        return result


def _artifacts_of(tasks: list[TaskRun], title: str) -> list[tuple[str, dict]]:
    return [
        (task.name, artifact)
        for task in tasks
        for artifacts in task.outputs.values()
        for artifact in artifacts
        if _title(artifact.get("type", {})) == title
    ]


def _metadata_of(tasks: list[TaskRun], title: str) -> list[tuple[str, dict]]:
    return [(name, a.get("metadata", {})) for name, a in _artifacts_of(tasks, title)]


def _gate_reasons(tasks: list[TaskRun]) -> list[str]:
    reasons: list[str] = []
    for _, evaluation in _artifacts_of(tasks, _EVALUATION_TITLE):
        if os.path.isfile(os.path.join(evaluation["uri"], artifact_files.EVALUATION_FILE)):
            reasons += artifact_files.read_evaluation(evaluation["uri"]).get("reasons", [])
    return reasons


def check(
    spec_path: str | os.PathLike,
    work_dir: str | os.PathLike,
    *,
    raw_dir: str | None = None,
    log: Callable[[str], None] = print,
    max_parallel: int = 2,
) -> CheckResult:
    """Runs every task of a compiled spec here as Vertex would and reads the outcome.

    Args:
      spec_path: the pipeline job JSON ``retailrec compile`` wrote.
      work_dir: the local storage (``WORK/gcs/``: every ``gs://`` URI) and task logs
        (``WORK/logs/<task>.log``).
      raw_dir: a local RetailRocket raw folder to run on (default: tiny generated data).
      log: receives one line per task.
      max_parallel: tasks run at once. Vertex starts every task whose inputs are ready; here
        at most this many (this machine's cores), in a reproducible order.

    Returns:
      The tasks run, the gate's decision and where the models were pushed.

    Raises:
      CheckError: the spec cannot run here or a task failed (the message names the task, its
        log and the log's last lines).
    """
    work = Path(work_dir).resolve()
    (work / LOGS_SUBDIR).mkdir(parents=True, exist_ok=True)
    storage = local_storage(work)
    job = json.loads(to_local(Path(spec_path).read_text(), storage))
    spec = job["pipelineSpec"]
    root = job.get("runtimeConfig", {}).get("gcsOutputDirectory")
    if not root or "://" in root:
        raise CheckError(f"{spec_path}: runtimeConfig.gcsOutputDirectory must be a gs:// path")
    _refuse_what_cannot_run_here(spec)
    order = dag_order(spec["root"]["dag"]["tasks"])
    _place_data(spec, raw_dir, work, log)
    run = _Run(spec, root, work, log)
    needs = dependencies(spec["root"]["dag"]["tasks"])
    width = max(len(n) for n in order)
    failure: BaseException | None = None
    with concurrent.futures.ThreadPoolExecutor(max(1, max_parallel)) as pool:
        running: dict[concurrent.futures.Future, str] = {}
        pending = list(order)
        while pending or running:
            for name in [n for n in pending if needs[n] <= set(run.done)]:
                if failure is not None or len(running) >= max(1, max_parallel):
                    break
                pending.remove(name)
                running[pool.submit(run.run_task, name)] = name
            if not running:
                break
            finished, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for future in sorted(finished, key=lambda f: running[f]):
                name = running.pop(future)
                if future.exception() is not None:
                    failure = failure or future.exception()
                    continue
                result = run.done[name] = future.result()
                produced = sum(len(a) for a in result.outputs.values())
                log(
                    f"[check] {len(run.done):2d}/{len(order)} {name:<{width}}  {result.kind:<9} "
                    f"ok  {result.seconds:6.1f} s  {produced} artifact(s)"
                )
    if failure is not None:  # the tasks already running were let finish, as Vertex does
        raise failure
    tasks = [run.done[name] for name in order]
    blessings = _metadata_of(tasks, _BLESSING_TITLE)
    blessed = bool(blessings) and all(int(m.get("blessed", 0)) == 1 for _, m in blessings)
    pushed_to: dict[str, str] = {}
    not_pushed: list[str] = []
    for task, metadata in _metadata_of(tasks, _PUSHED_MODEL_TITLE):
        destination = metadata.get("pushed_destination", "")
        if int(metadata.get("pushed", 0)) == 1 and (Path(destination) / "saved_model.pb").is_file():
            pushed_to[task] = destination
        else:
            not_pushed.append(task)
    return CheckResult(storage, tasks, blessed, pushed_to, sorted(not_pushed), _gate_reasons(tasks))
