"""The assistant's tools: declared once, used by the LLM, the CLI and the UI.

A :class:`Tool` is a name, a one-paragraph description, a pydantic model of
its arguments, a cost class and a function. The same declaration gives the
OpenAI function-calling schema (:meth:`Tool.schema`), validates arguments
from any caller (:meth:`Tool.validate`, with errors a model or a person can
act on), and runs the real engine (:meth:`Tool.run`). No tool executes
arbitrary code: arguments are data, pipelines are built from the component
allow-list, paths are resolved inside the workspace.

Cost classes drive the autonomy policy (:mod:`chatbci.assistant.autonomy`):

- ``read-only``: looks at data or the workspace and changes nothing a human
  relies on (figures it draws are stored by content hash);
- ``compute``: expensive (benchmarks); budgeted;
- ``writes``: changes the workspace (pipelines, knowledge notes).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
from dataclasses import dataclass, field
from enum import Enum
from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class Cost(str, Enum):
    """How much a tool call may cost or change."""

    READ_ONLY = "read-only"
    COMPUTE = "compute"
    WRITES = "writes"


class ToolError(Exception):
    """A tool call that cannot run as asked. The message is shown to the model."""


class StopRequested(ToolError):
    """The human pressed Stop while a tool was running."""


@dataclass
class ToolResult:
    """What a tool returns.

    Attributes
    ----------
    summary : dict
        Small, JSON-serialisable result for the model and the journal.
    artifacts : list of str
        Workspace-relative paths of figures and tables for the human.
    run : dict | None
        A benchmark run to record as a ``run`` journal event.
    text : str
        One line for humans (CLI, UI status).
    brief : dict | None
        What the model is sent instead of ``summary`` when the summary is
        large (e.g. per-channel tables of 64 channels): a subset of it, so
        every number the model may cite is in the journaled summary too.
        ``None``: the model gets ``summary``.
    """

    summary: dict
    artifacts: list[str] = field(default_factory=list)
    run: dict | None = None
    text: str = ""
    brief: dict | None = None

    @property
    def for_model(self) -> dict:
        """The result as the model sees it (``brief`` if set, else ``summary``)."""
        return self.brief if self.brief is not None else self.summary

    @property
    def result_hash(self) -> str:
        """sha256 of the canonical summary and artifacts: what a claim rests on."""
        blob = json.dumps({"summary": self.summary, "artifacts": self.artifacts},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class ToolContext:
    """What a tool may touch while it runs.

    Attributes
    ----------
    workspace : chatbci.workspace.Workspace
    actor : str
        Who asked for the run (``ai:<model>`` or ``human:<name>``).
    author : str | None
        Who wrote the arguments' content, when not ``actor``: a human who
        approves an AI's suggestion runs it, but the AI remains the author of
        the note it drafted. ``None``: ``actor``.
    progress : callable | None
        ``progress(done, total, text)`` for long tools (benchmarks).
    stop : threading.Event
        Set by the human's Stop button; long tools check it.
    n_jobs : int
        Parallel jobs for compute tools.
    """

    workspace: Any
    actor: str = "ai:assistant"
    author: str | None = None
    progress: Callable[[int, int, str], None] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    n_jobs: int = -1

    def save_figure(self, fig) -> str:
        """Store a matplotlib figure as PNG by content hash; return its path."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        return self.workspace.artifacts.put_bytes(buf.getvalue(), ".png")

    def save_table(self, df) -> str:
        """Store a pandas table as CSV by content hash; return its path."""
        return self.workspace.artifacts.put_bytes(df.to_csv(index=False).encode(), ".csv")


class Args(BaseModel):
    """Base of tool argument models: unknown arguments are errors, not ignored."""

    model_config = ConfigDict(extra="forbid")


#: Largest tool-call arguments accepted, as JSON text. The biggest honest call
#: (a pipeline with a grid, or a note of 8,000 characters) is far below it; a
#: larger one is refused before it is parsed, journaled or echoed anywhere.
MAX_ARGUMENTS_CHARS = 16_000

#: Longest error text sent back to the model or written to the journal.
MAX_ERROR_CHARS = 1_000


def clip_text(text, limit=MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    text = str(text)
    if len(text) <= limit:
        return text
    return text[:limit] + f" [... {len(text) - limit} more characters cut]"


# Bounded argument types: every string, list and number a model can send has a
# limit in its schema (the model sees it), checked before anything runs.
Name = Annotated[str, Field(min_length=1, max_length=60)]
ShortText = Annotated[str, Field(max_length=200)]


@dataclass(frozen=True)
class Tool:
    """One tool: name, description, argument model, cost class and function."""

    name: str
    description: str
    args: type[Args]
    cost: Cost
    func: Callable[[ToolContext, Args], ToolResult]
    precheck: Callable[[Any, Args], dict] | None = None

    def schema(self) -> dict:
        """The OpenAI function-calling declaration of this tool, compact.

        Tool schemas are sent with every request and were most of a small
        model's prompt (2,100 of 2,749 tokens), so the pydantic schema is
        pruned to what a model uses: no titles, no ``null`` alternatives or
        ``null`` defaults for optional arguments (leaving them out means the
        same), no ``additionalProperties`` (chatbci validates every call
        itself). Limits (lengths, counts, ranges) stay: the model must see them.
        """
        params = _compact_schema(self.args.model_json_schema())
        params.setdefault("properties", {})
        return {"type": "function",
                "function": {"name": self.name, "description": self.description,
                             "parameters": params}}

    def validate(self, raw) -> Args:
        """Validate raw arguments (dict or JSON text) into the argument model.

        Raises
        ------
        ToolError
            With one line per problem, naming the argument, what was given
            and what is expected, plus the list of valid arguments.
        """
        if raw is None or raw == "":
            raw = {}
        size = len(raw) if isinstance(raw, str) else len(json.dumps(raw, default=str))
        if size > MAX_ARGUMENTS_CHARS:
            raise ToolError(f"{self.name}: arguments are {size:,} characters; the limit is "
                            f"{MAX_ARGUMENTS_CHARS:,}. Send shorter arguments.")
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as err:
                raise ToolError(f"{self.name}: arguments are not valid JSON ({err.msg} at "
                                f"position {err.pos}). Send a JSON object.") from None
        if not isinstance(raw, dict):
            raise ToolError(f"{self.name}: arguments must be a JSON object, got "
                            f"{type(raw).__name__}.")
        try:
            return self.args.model_validate(raw)
        except ValidationError as err:
            raise ToolError(_describe(self, err)) from None

    def check(self, workspace, raw_args) -> tuple[Args, dict]:
        """Validate arguments and, where the tool has one, its plan, without running.

        Used before a call becomes a suggestion or a decision is recorded, so a
        human never approves an action that cannot run. Returns the validated
        arguments and what the precheck learned (e.g. ``n_subjects``).
        """
        args = raw_args if isinstance(raw_args, self.args) else self.validate(raw_args)
        if self.precheck is None:
            return args, {}
        try:
            return args, self.precheck(workspace, args) or {}
        except ToolError:
            raise
        except (ValueError, KeyError, FileNotFoundError) as err:
            raise ToolError(f"{self.name}: {err}") from err

    def run(self, ctx: ToolContext, raw_args) -> ToolResult:
        """Validate and run. Engine errors the user can fix become ToolError."""
        args = raw_args if isinstance(raw_args, self.args) else self.validate(raw_args)
        try:
            return self.func(ctx, args)
        except ToolError:
            raise
        except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
            # Engine errors carry messages written for users (dataset names,
            # valid choices, missing files); pass them on as tool errors.
            raise ToolError(f"{self.name}: {err}") from err


def _compact_schema(node):
    """Prune a pydantic JSON schema for a model's prompt (see :meth:`Tool.schema`)."""
    if isinstance(node, list):
        return [_compact_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in ("title", "additionalProperties") or (key == "default" and value is None):
            continue
        if key in ("properties", "$defs"):
            # Names of arguments (one may well be called "title"), not schema keywords.
            out[key] = {name: _compact_schema(sub) for name, sub in value.items()}
        else:
            out[key] = _compact_schema(value)
    alts = out.get("anyOf")
    if alts is not None:
        alts = [a for a in alts if a != {"type": "null"}]
        if len(alts) == 1:  # Optional[X] -> X: an omitted argument is the None
            out.pop("anyOf")
            out = {**alts[0], **out}
        else:
            out["anyOf"] = alts
    return out


def _describe(tool: Tool, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(arguments)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown argument '{loc}'")
        elif e["type"] == "missing":
            lines.append(f"missing required argument '{loc}'")
        else:
            given = clip_text(json.dumps(e.get("input"), default=str), 80)
            lines.append(f"argument '{loc}': {e['msg']} (got {given})")
    valid = ", ".join(tool.args.model_fields) or "none"
    shown = lines[:5] + ([f"{len(lines) - 5} more problems"] if len(lines) > 5 else [])
    return f"{tool.name}: " + "; ".join(shown) + f". Valid arguments: {valid}."


class ToolRegistry:
    """The tools, by name."""

    def __init__(self):
        self._tools: dict[str, Tool] = {}

    def register(self, name, args, cost, description=None, precheck=None):
        """Decorator declaring a tool from a function ``f(ctx, args) -> ToolResult``.

        ``precheck(workspace, args) -> dict`` optionally validates the plan of a
        call without running it (see :meth:`Tool.check`).
        """

        def deco(func):
            doc = description or (func.__doc__ or "").strip()
            self._tools[name] = Tool(name, " ".join(doc.split()), args, Cost(cost), func,
                                     precheck)
            return func

        return deco

    def __getitem__(self, name) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolError(f"Unknown tool {name!r}. Available tools: "
                            f"{', '.join(self._tools)}.") from None

    def __contains__(self, name):
        return name in self._tools

    def __iter__(self):
        return iter(self._tools.values())

    def names(self):
        return list(self._tools)

    def schemas(self, names=None):
        """OpenAI tool declarations (all tools, or those named)."""
        return [self[n].schema() for n in (names or self._tools)]


TOOLS = ToolRegistry()


# ---------------------------------------------------------------------------
# Argument types shared by several tools

Subjects = (Annotated[str, Field(max_length=200)]
            | Annotated[int, Field(ge=1, le=100_000)]
            | Annotated[list[Annotated[int, Field(ge=1, le=100_000)]], Field(max_length=1000)])


def _subject_list(value, dataset):
    from chatbci.bci.benchmark import parse_subjects

    return parse_subjects(value, dataset.subject_list)


def _dataset(name):
    from chatbci.bci.datasets import get_dataset

    return get_dataset(name)


def _rounded(obj, digits=4):
    """Round floats for compact, stable summaries."""
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, digits)
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v, digits) for v in obj]
    if hasattr(obj, "item"):  # numpy scalar
        return _rounded(obj.item(), digits)
    return obj


# ---------------------------------------------------------------------------
# Datasets


class ListDatasetsArgs(Args):
    classes: list[Annotated[str, Field(max_length=40)]] | None = Field(
        None, description="Only datasets having all these classes, e.g. "
                          "['left_hand', 'right_hand'].")
    min_subjects: int | None = Field(None, ge=1, le=100_000, description="Only datasets with at least "
                                                                 "this many subjects.")


@TOOLS.register("list_datasets", ListDatasetsArgs, Cost.READ_ONLY)
def list_datasets(ctx, args):
    """List MOABB motor-imagery datasets: subjects, sessions, channels, sfreq,
    classes."""
    from chatbci.bci.datasets import catalog

    table = catalog()
    rows = []
    for r in table.itertuples():
        if args.classes and not set(args.classes) <= set(r.classes):
            continue
        if args.min_subjects and r.n_subjects < args.min_subjects:
            continue
        rows.append({"name": r.name, "subjects": int(r.n_subjects),
                     "sessions": int(r.n_sessions), "channels": int(r.n_channels),
                     "sfreq": float(r.sfreq), "classes": list(r.classes)})
    return ToolResult({"n_datasets": len(rows), "datasets": rows},
                      text=f"{len(rows)} datasets")


class DatasetArgs(Args):
    name: Name = Field(..., description="Dataset name, e.g. 'PhysionetMI' or 'SimulatedMI'.")


@TOOLS.register("describe_dataset", DatasetArgs, Cost.READ_ONLY)
def describe_dataset(ctx, args):
    """Describe one dataset: subjects, sessions, channels, sfreq, classes, trials,
    interval, DOI."""
    from chatbci.bci.datasets import dataset_info

    info = dataset_info(args.name)
    subjects = info.pop("subjects", None)
    if subjects:
        info["subject_range"] = f"{min(subjects)}-{max(subjects)}"
    return ToolResult(_rounded(info), text=f"{info.get('name', args.name)}")


class ExploreArgs(Args):
    dataset: Name = Field("SimulatedMI", description="Dataset name.")
    subject: int = Field(..., ge=1, le=100_000, description="Subject number.")
    channels: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(["C3", "Cz", "C4"], min_length=1, max_length=6,
                                description="Channels for the ERD/ERS maps and PSD.")


@TOOLS.register("explore_subject", ExploreArgs, Cost.READ_ONLY)
def explore_subject(ctx, args):
    """Explore one subject's EEG: ERD/ERS maps, band power per class and channel
    with effect sizes, PSD. Figures go to the human."""
    from chatbci.bci.explore import explore_subject as _explore

    ds = _dataset(args.dataset)
    if args.subject not in ds.subject_list:
        raise ToolError(f"explore_subject: subject {args.subject} is not in {args.dataset} "
                        f"(subjects {ds.subject_list[0]}-{ds.subject_list[-1]}).")
    out = _explore(ds, args.subject, channels=tuple(args.channels), verbose="error")
    artifacts = [ctx.save_figure(item.figure) for item in out.values()]
    summary = {"dataset": args.dataset, "subject": args.subject}
    summary.update({key: _rounded(item.summary, 3) for key, item in out.items()})
    return ToolResult(summary, artifacts, brief=_explore_brief(summary, args.channels),
                      text=f"explored {args.dataset} subject {args.subject}")


#: Per-channel band-power tables the model gets: the channels asked for and the
#: strongest others. The full tables (64 channels on PhysionetMI: about 3,500
#: tokens, half a small model's context) stay in the journaled result.
BRIEF_TOP_CHANNELS = 4


def _explore_brief(summary, channels):
    """``summary`` with its per-channel band-power tables cut to a few channels."""
    bp = summary.get("band_power")
    if not isinstance(bp, dict) or not isinstance(bp.get("effect_size"), dict):
        return None
    keep = [ch for ch in channels if ch in bp["effect_size"]]
    for row in bp.get("top") or []:
        if len(keep) >= len(channels) + BRIEF_TOP_CHANNELS:
            break
        if row.get("channel") not in keep:
            keep.append(row.get("channel"))
    n_all = len(bp["effect_size"])
    if n_all <= len(keep):
        return None

    def cut(table):
        return {ch: v for ch, v in table.items() if ch in keep}

    brief_bp = dict(bp, effect_size=cut(bp["effect_size"]), auc=cut(bp.get("auc") or {}))
    if isinstance(bp.get("mean_power"), dict):
        brief_bp["mean_power"] = {cls: cut(t) for cls, t in bp["mean_power"].items()}
    brief_bp["channels_shown"] = (f"{len(keep)} of {n_all}: the ones asked for and the "
                                  "strongest; all channels are in this event's journaled "
                                  "result (the human sees them)")
    return dict(summary, band_power=brief_bp)


# ---------------------------------------------------------------------------
# Pipelines


class NoArgs(Args):
    pass


@TOOLS.register("list_components", NoArgs, Cost.READ_ONLY)
def list_components_tool(ctx, args):
    """List allowed pipeline components with their parameters, and the canonical
    MOABB pipelines."""
    from chatbci.bci.pipelines import CANONICAL, list_components

    comps = [{k: c[k] for k in ("name", "role", "description", "parameters")}
             for c in list_components()]
    out = {"components": comps, "canonical_pipelines": list(CANONICAL)}
    out.update(_deep_networks_brief())
    return ToolResult(out, text=f"{len(comps)} components")


def _deep_networks_brief():
    """The deep networks of the allow-list: when to use them, references, shipped
    pipelines, receptive fields, and whether the ``deep`` extra is installed."""
    from chatbci.bci import deep
    from chatbci.bci.pipelines import VARIANTS

    shipped = {name: spec.steps[0].name for name, spec in VARIANTS.items()
               if spec.steps and spec.steps[-1].from_ == "chatbci.bci.deep"}
    networks = {}
    for name in deep.MODELS:
        d = deep.describe_network(name)
        networks[name] = {"notes": d["notes"], "reference": d["reference"],
                          "receptive_field_samples": d["receptive_field"]["samples"]}
    brief = {"deep_pipelines": shipped, "deep_networks": networks,
             "deep_installed": deep.deep_available()}
    if not brief["deep_installed"]:
        brief["deep_install"] = deep.INSTALL_HINT
    return brief


class StepArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name = Field(..., description="Component name from list_components.")
    parameters: dict[str, Any] = Field(default_factory=dict, max_length=20)


class DefinePipelineArgs(Args):
    name: str = Field(..., min_length=1, max_length=60, description="Pipeline name.")
    steps: list[StepArgs] = Field(..., min_length=1, max_length=12,
                                  description="Components in order; the last is a "
                                              "classifier.")
    param_grid: dict[str, Annotated[list, Field(min_length=1, max_length=50)]] | None = Field(
        None, max_length=6, description="Optional grid, keys like 'svc__C'.")
    rationale: str = Field("", max_length=2000, description="Why this pipeline.")

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not v.strip() or any(ch in v for ch in "/\\\0"):
            raise ValueError("use a short name without slashes, e.g. 'TS+LR-C0.1'")
        return v.strip()


def _pipeline_file(name):
    slug = "".join(ch if ch.isalnum() or ch in "+-_." else "_" for ch in name)
    return f"{slug}.yml"


@TOOLS.register("define_pipeline", DefinePipelineArgs, Cost.WRITES)
def define_pipeline(ctx, args):
    """Define a pipeline from allowed components (MOABB YAML), usable by name in
    run_benchmark."""
    from chatbci.bci.pipelines import PipelineSpec, get_component

    steps = []
    for step in args.steps:
        comp = get_component(step.name)
        steps.append({"name": comp.name, "from": comp.module, "parameters": step.parameters})
    spec = PipelineSpec.model_validate({"name": args.name, "pipeline": steps,
                                        "param_grid": args.param_grid})
    # Whole, umask modes, and never through a pipelines/ linked out of the workspace.
    path = ctx.workspace.write_file("pipelines", _pipeline_file(args.name), spec.to_yaml())
    rel = path.relative_to(ctx.workspace.path).as_posix()
    return ToolResult({"name": spec.name, "path": rel, "digest": spec.digest()[:12],
                       "steps": [s["name"] for s in steps],
                       "paradigm_kind": spec.paradigm_kind}, [rel],
                      text=f"pipeline {spec.name} saved to {rel}")


def resolve_workspace_pipelines(workspace, names):
    """Canonical names or pipelines defined in the workspace -> PipelineSpecs."""
    from chatbci.bci.pipelines import PipelineError, get_pipeline, load_pipeline

    specs = []
    for name in names:
        path = workspace.path_for("pipelines", _pipeline_file(name))
        if path.is_file():
            specs.append(load_pipeline(path))
            continue
        try:
            specs.append(get_pipeline(name))
        except PipelineError:
            defined = sorted(p.stem for p in path.parent.glob("*.yml"))
            raise ToolError(
                f"Unknown pipeline {name!r}. Canonical: CSP+LDA, TS+LR, TS+SVM, MDM, FgMDM, "
                f"FBCSP+SVM, ACM+TS+SVM; defined in this workspace: "
                f"{', '.join(defined) or 'none'}. Use define_pipeline to add one."
            ) from None
    return specs


# ---------------------------------------------------------------------------
# Benchmarks and results


class BenchmarkArgs(Args):
    pipelines: list[Name] = Field(..., min_length=1, max_length=8,
                                  description="Canonical or workspace pipeline names.")
    dataset: Name = Field("SimulatedMI", description="Dataset name.")
    subjects: Subjects = Field("1-5", description="e.g. '1-5', '1,3,7' or [1, 2].")
    evaluation: Annotated[str, Field(max_length=30)] | None = Field(
        None, description="within-session, cross-session or cross-subject "
                          "(default: the workspace's protocol).")
    random_state: int | None = Field(None, ge=0, le=2**32 - 1,
                                     description="Default: the workspace's seed.")


def _results_dir(ws):
    return ws.path_for("results", "runs")


def benchmark_plan(ws, args: BenchmarkArgs):
    """Resolved benchmark request: dataset, subjects, evaluation, seed, pipelines.

    Raises ToolError on anything invalid, before any computation, so the
    autonomy policy can check budgets on a validated plan.
    """
    ds = _dataset(args.dataset)
    subjects = _subject_list(args.subjects, ds)
    evaluation = args.evaluation or ws.config.evaluation
    from chatbci.bci.benchmark import EVALUATIONS

    if evaluation not in EVALUATIONS:
        raise ToolError(f"run_benchmark: evaluation {evaluation!r} is not one of "
                        f"{list(EVALUATIONS)}.")
    specs = resolve_workspace_pipelines(ws, args.pipelines)
    seed = ws.config.random_state if args.random_state is None else args.random_state
    return dict(dataset=ds, subjects=subjects, evaluation=evaluation, random_state=seed,
                specs=specs)


def _benchmark_precheck(ws, args):
    plan = benchmark_plan(ws, args)
    return {"n_subjects": len(plan["subjects"]), "n_pipelines": len(plan["specs"]),
            "estimate": benchmark_cost(ws, plan).as_dict()}


def benchmark_cost(ws, plan):
    """Fits and seconds a planned benchmark will take (:func:`chatbci.bci.cost.estimate_cost`),
    timed by this workspace's earlier results."""
    from chatbci.bci.cost import estimate_cost

    ds = plan["dataset"]
    return estimate_cost(plan["specs"], evaluation=plan["evaluation"],
                         n_subjects=len(plan["subjects"]),
                         n_sessions=int(getattr(ds, "n_sessions", 1) or 1),
                         dataset_code=ds.code, history=workspace_results(ws))


def _with_fold_progress(progress):
    """``(on_progress, on_fold)``: each fit of a pipeline on a fold also moves the text.

    The UI's progress keeps counting (subject, pipeline) steps; between them
    its text says which subject, pipeline and fold is done, so a subject's
    folds are seen as they finish.
    """
    if progress is None:
        return None, None
    last = [0, 1]

    def on_progress(done, total, text):
        last[:] = [done, total]
        progress(done, total, text)

    def on_fold(subject, pipeline, fold, n_folds):
        progress(last[0], last[1], f"subject {subject} · {pipeline} fold {fold} of {n_folds}")

    return on_progress, on_fold


def _with_epoch_progress(progress, specs):
    """``(on_progress, context)``: deep networks also report each training epoch.

    The UI's progress keeps counting (subject, pipeline) steps; while a
    network trains, its text says which epoch it is at (from the workers,
    through :func:`chatbci.bci.deep.follow_epochs`).
    """
    import contextlib

    from chatbci.bci import deep

    if progress is None or not any(deep.max_epochs_of(s) for s in specs):
        return progress, contextlib.nullcontext()
    last = [0, 1]

    def on_progress(done, total, text):
        last[:] = [done, total]
        progress(done, total, text)

    return on_progress, deep.follow_epochs(
        lambda info: progress(last[0], last[1], deep.epoch_text(info)))


@TOOLS.register("run_benchmark", BenchmarkArgs, Cost.COMPUTE, precheck=_benchmark_precheck)
def run_benchmark_tool(ctx, args):
    """Benchmark pipelines on a dataset's subjects with a MOABB evaluation (same
    scores as MOABB, cached). Returns mean ± sd per pipeline."""
    from chatbci.bci.benchmark import BenchmarkStopped, pairs_text, run_benchmark
    from chatbci.bci.datasets import display_name
    from chatbci.bci.statistics import summary_table

    ws = ctx.workspace
    plan = benchmark_plan(ws, args)
    if ctx.stop.is_set():
        raise StopRequested("run_benchmark: stopped by the human before it started; "
                            "nothing was computed.")
    on_progress, on_fold = _with_fold_progress(ctx.progress)
    on_progress, following = _with_epoch_progress(on_progress, plan["specs"])
    try:
        with following:
            results = run_benchmark(
                plan["specs"], dataset=plan["dataset"], subjects=plan["subjects"],
                evaluation=plan["evaluation"], random_state=plan["random_state"],
                cache_dir=ws.path_for("results", "cache"), n_jobs=ctx.n_jobs,
                progress=False, on_progress=on_progress, on_fold=on_fold, stop=ctx.stop,
            )
    except BenchmarkStopped as err:
        # The journal records this message: say who stopped it and what was kept.
        how = ("interrupted by the human (KeyboardInterrupt)" if err.reason == "interrupted"
               else "stopped by the human")
        raise StopRequested(
            f"run_benchmark: {how}; work ended {err.seconds:.1f} s after the request. "
            f"Kept (cached, a re-run resumes): {err.kept_text}. Not computed: "
            f"{pairs_text(err.missing) or 'none'}."
            + (f" Already cached before: {len(err.from_cache)} results." if err.from_cache
               else "")
        ) from err
    config = {"dataset": plan["dataset"].code, "subjects": plan["subjects"],
              "evaluation": plan["evaluation"], "random_state": plan["random_state"],
              "pipelines": {s.name: s.digest() for s in plan["specs"]}}
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    runs = _results_dir(ws)
    runs.mkdir(parents=True, exist_ok=True)
    results.assign(evaluation=plan["evaluation"]).to_csv(
        runs / f"{config_hash[:16]}.csv", index=False)
    table = summary_table(results)
    scores = {row.pipeline: {"mean": round(row.mean, 4), "sd": round(row.sd, 4),
                             "n_subjects": int(row.n_subjects)}
              for row in table.itertuples()}
    artifacts = [ctx.save_table(results)]
    info = results.attrs.get("chatbci", {})
    summary = {"dataset": display_name(plan["dataset"]), "evaluation": plan["evaluation"],
               "subjects": plan["subjects"], "random_state": plan["random_state"],
               "scores": scores, "metric": "roc_auc" if results["n_classes"].max() <= 2
               else "accuracy",
               "best": table.iloc[0]["pipeline"], "config_hash": config_hash[:16],
               "from_cache": info.get("n_cached", 0), "computed": info.get("n_computed", 0)}
    if info.get("warnings"):  # e.g. a subject with fewer trials than its dataset has
        summary["warnings"] = info["warnings"]
    # Unseeded randomness, filter-bank bands: what the methods section must say.
    engine_notes = info.get("engine_notes", [])
    if engine_notes:
        summary["engine_notes"] = engine_notes
    if info.get("deep"):  # networks: seed, device, torch/braindecode versions
        summary["deep"] = info["deep"]
    run = {"config_hash": config_hash, "config": config, "scores": scores,
           "engine_notes": engine_notes,
           "results_path": (runs / f"{config_hash[:16]}.csv").relative_to(ws.path).as_posix(),
           # What a methods section needs, so exports read the journal only.
           "protocol": _protocol(plan, results),
           "pipelines": {s.name: s.to_dict() for s in plan["specs"]}}
    if info.get("deep"):
        run["deep"] = info["deep"]
    best = table.iloc[0]
    return ToolResult(summary, artifacts, run=run,
                      text=f"best {best.pipeline} {best['mean']:.3f} ± {best.sd:.3f}")


def _protocol(plan, results):
    from chatbci.bci.benchmark import make_paradigm
    from chatbci.bci.datasets import dataset_info

    ds = plan["dataset"]
    paradigm = make_paradigm("left_right")
    info = dataset_info(ds)
    # MOABB 1.7 keeps the band-pass as ``filters=[[fmin, fmax]]``.
    (fmin, fmax), = paradigm.filters
    filters = {"fmin": fmin, "fmax": fmax, "filters": [list(b) for b in paradigm.filters]}
    if any(s.paradigm_kind == "filterbank" for s in plan["specs"]):
        filters["filter_bank"] = [list(b) for b in make_paradigm("left_right", True).filters]
    return {
        "dataset": {"name": info.get("name"), "code": ds.code, "doi": info.get("doi"),
                    "reference": info.get("reference"), "n_channels": info.get("n_channels"),
                    "sfreq": info.get("sfreq"), "n_sessions": info.get("n_sessions"),
                    "subjects": plan["subjects"]},
        "paradigm": {"name": type(paradigm).__name__, "classes": ["left_hand", "right_hand"],
                     **filters, "tmin": paradigm.tmin, "tmax": paradigm.tmax,
                     "interval": list(ds.interval), "resample": paradigm.resample},
        "evaluation": {"type": plan["evaluation"], "random_state": plan["random_state"],
                       "folds": {"within-session": "5-fold stratified CV per session",
                                 "cross-session": "leave one session out",
                                 "cross-subject": "leave one subject out"}[plan["evaluation"]],
                       "metric": str(paradigm.scoring)},
        "software": "MOABB evaluations via chatbci (same folds and scores as MOABB)",
    }


def workspace_results(ws):
    """All benchmark results of the workspace, latest run winning on duplicates."""
    import pandas as pd

    runs = sorted(_results_dir(ws).glob("*.csv"), key=lambda p: p.stat().st_mtime)
    if not runs:
        return None
    df = pd.concat([pd.read_csv(p, dtype={"subject": str, "session": str}) for p in runs],
                   ignore_index=True)
    keys = ["dataset", "evaluation", "pipeline", "subject", "session"]
    return df.drop_duplicates(keys, keep="last").reset_index(drop=True)


class ResultsArgs(Args):
    dataset: Name | None = Field(None, description="Only this dataset (name or code).")
    pipelines: list[Name] | None = Field(None, max_length=32,
                                         description="Only these pipelines.")
    evaluation: Annotated[str, Field(max_length=30)] | None = Field(
        None, description="Only this evaluation.")


def journal_results(ws, limit=None):
    """Per-subject scores of every journaled benchmark run, labelled by run and time.

    Each ``run`` event's table is the content-addressed CSV its
    ``tool_result`` journaled (checked against its name), else the run's
    ``results_path``; :func:`chatbci.bci.statistics.results_from_runs` adds
    the evaluation, paradigm, seed, run id and time the like-for-like
    comparison groups by. ``limit``: only the newest ``limit`` runs.
    """
    from chatbci.bci.statistics import read_run_table, results_from_runs

    runs = []
    for ev in ws.journal.events(kind="run", limit=limit):
        p = ev.payload
        if not isinstance(p.get("config"), dict):
            continue
        runs.append({"run": ev.id, "time": ev.ts.isoformat(), "config": p["config"],
                     "protocol": p.get("protocol"),
                     "table": read_run_table(ws.path, p, _parent_payload(ws, ev))})
    return results_from_runs(runs)


def _parent_payload(ws, ev):
    try:
        return ws.journal.get(ev.parent_id).payload if ev.parent_id else {}
    except KeyError:
        return {}


def _select_results(ws, args):
    df = journal_results(ws)
    if df.empty:
        raise ToolError("No benchmark results yet in this workspace: run_benchmark first.")
    if args.dataset:
        code = args.dataset
        try:
            code = _dataset(args.dataset).code
        except ValueError:
            pass
        df = df[df["dataset"].isin([code, args.dataset])]
    if args.evaluation:
        df = df[df["evaluation"] == args.evaluation]
    if args.pipelines:
        df = df[df["pipeline"].isin(args.pipelines)]
    if df.empty:
        raise ToolError("No results match; show_results without filters lists what exists.")
    return df


def _above_chance(df):
    """(dataset, evaluation, seed, pipeline) -> {subject: beats chance at p < 0.05}."""
    from chatbci.bci.statistics import above_chance

    return above_chance(df)


def _group_summary(c):
    """The key of a like-for-like group, for tool results: the dataset by the one name
    it is shown by, with the code its runs are journaled under (``dataset_code``) to
    match them."""
    from chatbci.bci.datasets import display_name

    out = {k: v for k, v in c.key.items() if v not in (None, "")}
    if out.get("dataset"):
        out["dataset_code"] = out["dataset"]
        out["dataset"] = display_name(out["dataset"])
    return out


@TOOLS.register("show_results", ResultsArgs, Cost.READ_ONLY)
def show_results(ctx, args):
    """Show benchmark results so far: per dataset, evaluation and seed, the pipelines
    ranked on the subjects they share (mean ± sd, n), then those on other subjects
    with their own n; subjects above chance."""
    import pandas as pd

    from chatbci.bci.statistics import like_for_like, score_plot, subject_ranges

    df = _select_results(ctx.workspace, args)
    chance = _above_chance(df)
    rows, groups = [], []
    for c in like_for_like(df, tests=False):
        key = _group_summary(c)
        groups.append({**key, "ranked_on_subjects": subject_ranges(c.subjects),
                       "n_subjects": c.n_subjects,
                       "ranked": list(c.ranking["pipeline"]),
                       "apart": list(c.apart["pipeline"])})
        for ranked, table in ((True, c.ranking), (False, c.apart)):
            for r in table.itertuples():
                row = {**key, "pipeline": r.pipeline, "mean": round(float(r.mean), 4),
                       "sd": round(float(r.sd), 4), "n_subjects": int(r.n_subjects),
                       "subjects": subject_ranges(c.subjects) if ranked else r.subjects,
                       "ranked": ranked}
                hit = chance.get((c.key["dataset"], c.key["evaluation"], c.key["seed"],
                                  r.pipeline))
                if hit:  # counted on the subjects this row rests on
                    mine = [hit[s] for s in (c.subjects if ranked else hit)]
                    row["subjects_above_chance"] = f"{sum(mine)} of {len(mine)}"
                rows.append(row)
    artifacts = [ctx.save_table(pd.DataFrame(rows)), ctx.save_figure(score_plot(df))]
    note = ("Means of ranked pipelines are over the subjects they share; pipelines with "
            "ranked=false ran on other subjects and are not comparable with the ranking. "
            "subjects_above_chance: subjects whose score beats chance (p < 0.05) for "
            "their trial count.")
    return ToolResult({"results": rows, "groups": groups, "note": note}, artifacts,
                      text=f"{len(rows)} pipeline results")


@TOOLS.register("compare_pipelines", ResultsArgs, Cost.READ_ONLY)
def compare_pipelines_tool(ctx, args):
    """Compare pipelines with paired tests (MOABB) on the subjects they share: the
    ranking, the best, p-values (with n and the smallest p possible), effect sizes;
    pipelines on other subjects listed apart; a meta-analysis over datasets/seeds."""
    from chatbci.bci.figures import forest_plot
    from chatbci.bci.statistics import like_for_like, meta_analysis, paired_plot

    df = _select_results(ctx.workspace, args)
    comparisons = like_for_like(df)
    out, apart, artifacts = [], [], []
    for c in comparisons:
        d = c.to_dict()
        if c.best is None:
            apart.append({**_group_summary(c), "pipelines": [
                {"pipeline": r["pipeline"], "n_subjects": r["n_subjects"],
                 "subjects": r.get("subjects") or d["subjects"]}
                for r in d["ranking"] + d["apart"]],
                "reason": "no two pipelines share 2 subjects here"})
            continue
        best = d["ranking"][0]
        pairs = [{"better": c.best, "worse": r["pipeline"], "p": r["p_vs_best"],
                  "smd": r["smd_vs_best"], "n_subjects": c.n_subjects, "min_p": d["min_p"]}
                 for r in d["ranking"][1:]]
        entry = {**_group_summary(c), "best": c.best, "best_mean": best["mean"],
                 "n_subjects": c.n_subjects, "subjects": d["subjects"], "test": c.test,
                 "min_p": d["min_p"], "vs_best": pairs, "ranking": d["ranking"],
                 "not_ranked": d["apart"], "runs": [int(r) for r in c.runs]}
        if c.caution:
            entry["caution"] = c.caution
        out.append(entry)
        shared = df[df["subject"].isin(c.subjects)
                    & df["pipeline"].isin(c.ranking["pipeline"])]
        for k, v in c.key.items():
            if k in shared.columns:
                shared = shared[shared[k].astype(str) == str(v)]
        artifacts.append(ctx.save_figure(
            paired_plot(shared, c.best, str(c.ranking.iloc[1]["pipeline"]))))
    if not out:
        raise ToolError("compare_pipelines needs at least two pipelines benchmarked on at "
                        "least 2 of the same subjects with the same dataset, evaluation and "
                        "seed; benchmark them on the same subjects first.")
    summary = {"comparisons": out}
    if apart:
        summary["not_compared"] = apart
    meta = meta_analysis(comparisons)
    if len(meta):
        summary["meta_analysis"] = [
            {"better": m.pipe1, "worse": m.pipe2, "groups": m.groups,
             "n_subjects": m.n_subjects, "p": round(float(m.p), 6),
             "smd": round(float(m.smd), 3),
             "I2": None if m.I2 != m.I2 else round(float(m.I2), 3)}
            for m in meta.itertuples() if m.smd > 0]
        for m in summary["meta_analysis"][:2]:
            artifacts.append(ctx.save_figure(forest_plot(comparisons, m["better"],
                                                         m["worse"])))
    return ToolResult(summary, artifacts,
                      text="; ".join(f"{c['dataset']}: best {c['best']} (n = "
                                     f"{c['n_subjects']})" for c in out))


# ---------------------------------------------------------------------------
# Knowledge


class AddNoteArgs(Args):
    title: str = Field(..., min_length=3, max_length=120)
    body: str = Field(..., min_length=1, max_length=8000, description="Markdown.")
    sources: list[Annotated[str, Field(max_length=500)]] = Field(
        default_factory=list, max_length=20, description="DOIs, URLs or journal event ids.")


@TOOLS.register("add_note", AddNoteArgs, Cost.WRITES)
def add_note(ctx, args):
    """Add a note to the shared knowledge base (unverified until a human verifies
    it)."""
    # The author is who wrote the text (an approved AI draft stays the AI's,
    # unverified); only a human's explicit verify vouches for it.
    note = ctx.workspace.knowledge.add(args.title, args.body,
                                       author=ctx.author or ctx.actor, sources=args.sources)
    return ToolResult({"note_id": note.id, "verified": note.verified, "path": note.path},
                      [note.path], text=f"note {note.id}")


class SearchArgs(Args):
    query: str = Field(..., min_length=1, max_length=200)
    limit: int = Field(5, ge=1, le=20)


@TOOLS.register("search_knowledge", SearchArgs, Cost.READ_ONLY)
def search_knowledge(ctx, args):
    """Search knowledge notes; returns author and verification status."""
    notes = ctx.workspace.knowledge.search(args.query, limit=args.limit)
    items = [{"note_id": n.id, "title": n.title, "author": n.author,
              "verified": n.verified, "sources": list(n.sources),
              "excerpt": n.body[:600]} for n in notes]
    return ToolResult({"query": args.query, "notes": items}, text=f"{len(items)} notes")


# ---------------------------------------------------------------------------
# Proposals


class ActionArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: Name = Field(..., description="The tool to run if the human accepts.")
    args: dict[str, Any] = Field(default_factory=dict, max_length=20)


class ProposeArgs(Args):
    action: ActionArgs = Field(..., description="Exact tool call proposed.")
    rationale: str = Field(..., min_length=3, max_length=2000,
                           description="Why, citing the results it rests on.")


@TOOLS.register("propose", ProposeArgs, Cost.READ_ONLY)
def propose(ctx, args):
    """Propose an exact tool call with a rationale; the human accepts, rejects or
    modifies it."""
    if args.action.tool == "propose":
        raise ToolError("propose: the proposed action cannot itself be a proposal.")
    # Fail now, not after the human approved.
    TOOLS[args.action.tool].check(ctx.workspace, args.action.args)
    return ToolResult({"proposed": args.action.model_dump(), "rationale": args.rationale},
                      text=f"proposed {args.action.tool}")
