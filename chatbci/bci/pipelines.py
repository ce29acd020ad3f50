"""Decoding pipelines: a registry of allowed components and MOABB-style specs.

Pipelines are *data*: a :class:`PipelineSpec` holds what a MOABB YAML
pipeline file holds (``name``, ``paradigms``, ``citations``, ``pipeline``
steps and an optional ``param_grid``) and :meth:`PipelineSpec.build` turns it
into a scikit-learn :class:`~sklearn.pipeline.Pipeline` with
:func:`~sklearn.pipeline.make_pipeline`, exactly like MOABB's
``create_pipeline_from_config``, so step names are the lower-cased class
names and MOABB ``param_grid`` keys such as ``svc__C`` keep working.

Unlike MOABB, nothing is imported on the say-so of the file: a step's
``from:`` must be the module registered for that component in
:data:`COMPONENTS`, which is therefore the allow-list of everything a
pipeline (written by a person or by an LLM) can contain. YAML is read with
``yaml.safe_load`` and nothing is evaluated. Two extensions over MOABB's
YAML, both needed to express MOABB's own FBCSP pipeline (which MOABB ships
as a Python file):

- ``FilterBank``'s ``estimator`` parameter is a list of steps, built into a
  nested ``make_pipeline(...)``;
- ``SelectKBest``'s ``score_func`` is a function *name* taken from a short
  allow-list (e.g. ``mutual_info_classif``).

The canonical pipelines of MOABB's benchmark ship as YAML files in
``chatbci/bci/pipeline_files`` and are exposed as :data:`CANONICAL` (loaded
on first use) and through :func:`get_pipeline`.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import importlib
import inspect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from os import PathLike
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sklearn.base import clone
from sklearn.pipeline import Pipeline, make_pipeline

__all__ = [
    "CANONICAL",
    "COMPONENTS",
    "ROLES",
    "VARIANTS",
    "Component",
    "PipelineError",
    "PipelineSpec",
    "StepSpec",
    "canonical_pipelines",
    "code_identity",
    "get_component",
    "get_pipeline",
    "is_stateless",
    "list_components",
    "load_pipeline",
    "moabb_pipeline_support",
    "moabb_pipelines_markdown",
    "needs_filterbank",
    "save_pipeline",
    "seed_pipeline",
    "unseeded_randomness",
]


class PipelineError(ValueError):
    """A pipeline specification is invalid (unknown component, bad parameter...)."""


# ---------------------------------------------------------------------------
# Component registry
# ---------------------------------------------------------------------------

#: Roles a component can play, in the order they usually appear in a pipeline.
ROLES = (
    "augmentation",
    "covariance",
    "spatial filter",
    "feature",
    "feature selection",
    "classifier",
    "meta",
)


@dataclass(frozen=True)
class Component:
    """One estimator that pipelines are allowed to use.

    Parameters
    ----------
    name : str
        Class name, as written in a MOABB YAML ``name:`` field.
    module : str
        Module the class is imported from (the YAML ``from:`` field). This is
        the only module a step with this name may come from.
    description : str
        One line for humans and LLMs.
    role : str
        One of :data:`ROLES`.
    stateless : bool
        True when ``transform`` of one epoch does not depend on training data
        (``fit`` learns nothing), so the step may be computed once per subject
        instead of once per cross-validation fold.
    nested : tuple of str
        Parameters whose value is a list of steps, built into a nested
        ``make_pipeline`` (FilterBank's ``estimator``).
    functions : dict
        Parameters whose value names a function: ``{param: (module, names)}``;
        only the listed names may be used.

    Notes
    -----
    The class is imported on first access of :attr:`cls` (importing MOABB
    costs seconds), and :attr:`parameters` is derived from the class
    signature, the same way scikit-learn's ``get_params`` finds them.
    """

    name: str
    module: str
    description: str
    role: str
    stateless: bool
    nested: tuple[str, ...] = ()
    functions: Mapping[str, tuple[str, tuple[str, ...]]] = field(
        default_factory=dict
    )

    @functools.cached_property
    def cls(self) -> type:
        """The estimator class (imported on first access)."""
        return getattr(importlib.import_module(self.module), self.name)

    @functools.cached_property
    def parameters(self) -> Mapping[str, Any]:
        """Constructor parameters and their defaults (None when required)."""
        return MappingProxyType(
            {
                name: None if p.default is p.empty else p.default
                for name, p in _init_parameters(self.cls).items()
            }
        )

    @functools.cached_property
    def required(self) -> tuple[str, ...]:
        """Constructor parameters without a default."""
        return tuple(
            name
            for name, p in _init_parameters(self.cls).items()
            if p.default is p.empty
        )

    def choices(self) -> dict[str, list[str]]:
        """Allowed values of the parameters restricted by this registry."""
        out = {param: list(names) for param, (_, names) in self.functions.items()}
        if self.name == "Covariances":
            out["estimator"] = sorted(_covariance_estimators())
        return out


def _init_parameters(cls: type) -> dict[str, inspect.Parameter]:
    # Same rule as sklearn's BaseEstimator._get_param_names: named arguments
    # of __init__; *args / **kwargs (e.g. Covariances' **kwds) are not params.
    sig = inspect.signature(cls.__init__)
    return {
        name: p
        for name, p in sig.parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _covariance_estimators() -> set[str]:
    try:  # pyriemann >= 0.12 moved the helpers to pyriemann.geometry
        from pyriemann.geometry.covariance import cov_est_functions
    except ImportError:  # pragma: no cover - older pyriemann
        from pyriemann.utils.covariance import cov_est_functions
    return set(cov_est_functions)


_SCORE_FUNCS = ("sklearn.feature_selection", ("f_classif", "mutual_info_classif"))

_REGISTRY = (
    Component(
        "AugmentedDataset", "moabb.pipelines.features",
        "Stacks `order` copies of the channels delayed by `lag` samples "
        "(augmented covariance method, ACM); put before Covariances.",
        "augmentation", stateless=True,
    ),
    Component(
        "Covariances", "pyriemann.estimation",
        "Spatial covariance matrix of each epoch (estimator 'oas', 'lwf', "
        "'scm', ...).",
        "covariance", stateless=True,
    ),
    Component(
        "Shrinkage", "pyriemann.estimation",
        "Shrinks each covariance matrix towards a scaled identity "
        "(regularisation).",
        "covariance", stateless=True,
    ),
    Component(
        "CSP", "pyriemann.spatialfilters",
        "Common spatial patterns learnt from covariance matrices; outputs the "
        "log-variance of `nfilter` filtered signals (multi-class via AJD).",
        "spatial filter", stateless=False,
    ),
    Component(
        "TangentSpace", "pyriemann.tangentspace",
        "Maps covariance matrices to vectors in the tangent space at their "
        "training-set Riemannian mean.",
        "feature", stateless=False,
    ),
    Component(
        "LogVariance", "moabb.pipelines.features",
        "Log-variance of each channel of each epoch (band-power features).",
        "feature", stateless=True,
    ),
    Component(
        "SelectKBest", "sklearn.feature_selection",
        "Keeps the `k` features scoring best under `score_func` "
        "('mutual_info_classif' or 'f_classif').",
        "feature selection", stateless=False,
        functions={"score_func": _SCORE_FUNCS},
    ),
    Component(
        "FilterBank", "moabb.pipelines.utils",
        "Fits a copy of the nested `estimator` steps on each frequency band "
        "(last data axis) and concatenates the outputs; needs a FilterBank "
        "paradigm.",
        # Conservative: whether it is stateless depends on the nested steps.
        "meta", stateless=False, nested=("estimator",),
    ),
    Component(
        "MDM", "pyriemann.classification",
        "Minimum distance to the Riemannian mean of each class, on "
        "covariance matrices.",
        "classifier", stateless=False,
    ),
    Component(
        "FgMDM", "pyriemann.classification",
        "MDM after geodesic filtering (FGDA) of covariance matrices in the "
        "tangent space.",
        "classifier", stateless=False,
    ),
    Component(
        "LinearDiscriminantAnalysis", "sklearn.discriminant_analysis",
        "Linear discriminant analysis on feature vectors (alias LDA; "
        "solver='lsqr', shrinkage='auto' for shrinkage LDA).",
        "classifier", stateless=False,
    ),
    Component(
        "SVC", "sklearn.svm",
        "Support vector classifier on feature vectors (kernel 'linear', "
        "'rbf', ...).",
        "classifier", stateless=False,
    ),
    Component(
        "LogisticRegression", "sklearn.linear_model",
        "(Regularised) logistic regression on feature vectors.",
        "classifier", stateless=False,
    ),
)

# Deep-learning decoders (the optional ``deep`` extra): braindecode networks
# wrapped as classifiers of epochs in chatbci.bci.deep, which imports torch
# only when one is fitted, so they are listed and validated without it.
_DEEP_DESCRIPTIONS = {
    "ShallowFBCSPNet": "Shallow ConvNet (Schirrmeister 2017), a learnt filter-bank CSP; "
                       "trained on the epochs themselves (first and only step).",
    "EEGNetv4": "EEGNet-8,2 (Lawhern 2018), compact depthwise-separable ConvNet "
                "(alias EEGNet); trained on the epochs (only step).",
    "Deep4Net": "Deep ConvNet (Schirrmeister 2017), four conv-pool blocks; needs more "
                "trials; trained on the epochs (only step).",
    "EEGConformer": "EEG Conformer (Song 2023): convolution + transformer encoder; "
                    "trained on the epochs (only step).",
    "ATCNet": "ATCNet (Altaheri 2023): convolution, attention and TCN; set sfreq to the "
              "data's rate; trained on the epochs (only step).",
}
_REGISTRY += tuple(
    Component(name, "chatbci.bci.deep",
              text + " Needs `pip install \"chatbci[deep]\"`.",
              "classifier", stateless=False)
    for name, text in _DEEP_DESCRIPTIONS.items()
)

#: The allow-list of pipeline components, keyed by class name.
COMPONENTS: Mapping[str, Component] = MappingProxyType(
    {c.name: c for c in _REGISTRY}
)
_ALIASES = MappingProxyType({"LDA": "LinearDiscriminantAnalysis",
                             "EEGNet": "EEGNetv4"})  # braindecode 1.x name


def get_component(name: str) -> Component:
    """Return the registered component called ``name``.

    Parameters
    ----------
    name : str
        Class name (e.g. ``"Covariances"``) or alias (``"LDA"``); matched
        case-insensitively when there is no exact match.

    Returns
    -------
    component : Component

    Raises
    ------
    PipelineError
        If ``name`` is not registered; the message lists the valid names.
    """
    if not isinstance(name, str):
        raise PipelineError(f"A component name must be a string, got {name!r}.")
    name = _ALIASES.get(name, name)
    if name in COMPONENTS:
        return COMPONENTS[name]
    folded = {k.lower(): v for k, v in {**COMPONENTS, **_ALIASES}.items()}
    match = folded.get(name.lower())
    if match is not None:
        return match if isinstance(match, Component) else COMPONENTS[match]
    aliases = ", ".join(f"{a} = {t}" for a, t in _ALIASES.items())
    raise PipelineError(
        f"Unknown component {name!r}. Valid components: "
        f"{', '.join(sorted(COMPONENTS))} (aliases: {aliases})."
    )


def is_stateless(estimator: Any) -> bool:
    """Whether an estimator's transform of one epoch ignores its training data.

    Parameters
    ----------
    estimator : estimator instance
        A step of a built pipeline, a Pipeline or a FilterBank.

    Returns
    -------
    stateless : bool
        True for instances of components registered as stateless (exact
        class, so subclasses are not trusted), for a FilterBank or Pipeline
        whose steps are all stateless, False for anything else.
    """
    if isinstance(estimator, Pipeline):
        return all(is_stateless(step) for _, step in estimator.steps)
    comp = COMPONENTS.get(type(estimator).__name__)
    if comp is None or type(estimator) is not comp.cls:
        return False
    if comp.nested:  # FilterBank fits a copy of its nested estimator per band
        return all(is_stateless(getattr(estimator, p)) for p in comp.nested)
    return comp.stateless


def needs_filterbank(estimator: Any) -> bool:
    """Whether ``estimator`` contains a FilterBank step (needs 4-D band data)."""
    steps = estimator.steps if isinstance(estimator, Pipeline) else [(None, estimator)]
    filterbank = COMPONENTS["FilterBank"]
    return any(
        type(step).__name__ == filterbank.name and isinstance(step, filterbank.cls)
        for _, step in steps
    )


def list_components() -> list[dict[str, Any]]:
    """Describe every registered component as JSON-serialisable data.

    Returns
    -------
    components : list of dict
        One dict per component with keys ``name``, ``from``, ``role``,
        ``description``, ``stateless``, ``parameters`` (name -> default,
        rendered JSON-safe: functions by name, required ones as None),
        ``required``, ``nested`` and ``choices`` (restricted parameters ->
        allowed values).
    """
    return [
        {
            "name": c.name,
            "from": c.module,
            "role": c.role,
            "description": c.description,
            "stateless": c.stateless,
            "parameters": {k: _jsonable(v) for k, v in c.parameters.items()},
            "required": list(c.required),
            "nested": list(c.nested),
            "choices": c.choices(),
        }
        for c in COMPONENTS.values()
    ]


def _jsonable(value: Any) -> Any:
    """Render a default value as JSON-safe data (functions by name)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not hasattr(value, "__len__"):  # numpy scalar
        return _jsonable(value.item())
    if callable(value) and hasattr(value, "__name__"):
        return value.__name__
    return repr(value)


# ---------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------

_PARADIGMS = {
    "standard": ("LeftRightImagery", "MotorImagery"),
    "filterbank": ("FilterBankLeftRightImagery", "FilterBankMotorImagery"),
}


class _Spec(BaseModel):
    # Pydantic wraps errors raised by validators in a ValidationError; callers
    # of this module get the PipelineError itself instead.
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise _pipeline_error(err) from None

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any):  # noqa: D102
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as err:
            raise _pipeline_error(err) from None


def _pipeline_error(err: ValidationError) -> PipelineError:
    """Turn a pydantic error into a PipelineError, keeping our own messages."""
    messages = []
    for e in err.errors():
        cause = e.get("ctx", {}).get("error")
        if isinstance(cause, PipelineError):
            return cause
        where = ".".join(str(x) for x in e["loc"]) or "pipeline"
        if e["type"] == "extra_forbidden":
            messages.append(
                f"unknown key {where!r}; a pipeline has keys name, paradigms, "
                "citations, pipeline, param_grid and a step has keys name, "
                "from, parameters"
            )
        else:
            messages.append(f"{where}: {e['msg']}")
    return PipelineError("Invalid pipeline specification: " + "; ".join(messages))


class StepSpec(_Spec):
    """One pipeline step: ``{name, from, parameters}`` as in MOABB's YAML.

    Validated against :data:`COMPONENTS` on construction: the name must be
    registered (aliases are replaced by the class name), ``from`` must be
    the registered module (it is filled in when omitted), parameter names
    must exist and values are checked by the estimator's own parameter
    validation where it has one.
    """

    name: str
    from_: str | None = Field(default=None, alias="from")
    parameters: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _none_parameters(cls, data: Any) -> Any:
        # YAML "parameters:" with nothing under it loads as None.
        if isinstance(data, dict) and data.get("parameters", {}) is None:
            data = {**data, "parameters": {}}
        return data

    @model_validator(mode="after")
    def _check(self) -> StepSpec:
        comp = get_component(self.name)
        self.name = comp.name
        if self.from_ is None:
            self.from_ = comp.module
        elif self.from_ != comp.module:
            raise PipelineError(
                f"{comp.name} must come from {comp.module!r}, not "
                f"{self.from_!r}: only registered components can be imported."
            )
        unknown = sorted(set(self.parameters) - set(comp.parameters))
        if unknown:
            raise PipelineError(
                f"Unknown parameter(s) {', '.join(map(repr, unknown))} for "
                f"{comp.name}. Valid parameters: "
                f"{', '.join(sorted(comp.parameters)) or '(none)'}."
            )
        missing = [p for p in comp.required if p not in self.parameters]
        if missing:
            raise PipelineError(
                f"{comp.name} needs parameter(s) {', '.join(missing)}."
            )
        for param, value in self.parameters.items():
            if param in comp.nested:
                self.parameters[param] = _nested_steps(comp, param, value)
            else:
                _check_plain(value, f"{comp.name}.{param}")
            if param in comp.functions:
                _function_choice(comp, param, value)
        _check_estimator(self._instantiate(), comp.name)
        return self

    def _instantiate(self):
        comp = COMPONENTS[self.name]
        params = {}
        for param, value in self.parameters.items():
            if param in comp.nested:
                value = make_pipeline(
                    *(StepSpec.model_validate(s)._instantiate() for s in value)
                )
            elif param in comp.functions:
                # Re-checked here: specs are mutable.
                name, bound = _function_choice(comp, param, value)
                value = getattr(importlib.import_module(comp.functions[param][0]), name)
                if bound:
                    value = functools.partial(value, **bound)
            params[param] = value
        return comp.cls(**params)


def _function_choice(comp: Component, param: str, value: Any) -> tuple[str, dict]:
    """``(function name, bound keywords)`` of a function-valued parameter.

    A name from the allow-list (``mutual_info_classif``), or a mapping that
    also seeds it (``{name: mutual_info_classif, random_state: 42}``): the
    only keyword a YAML file may bind, so that a pipeline whose function
    draws random numbers can be made reproducible without code.
    """
    names = comp.functions[param][1]
    name, bound = value, {}
    if isinstance(value, Mapping):
        name = value.get("name")
        bound = {k: v for k, v in value.items() if k != "name"}
    seed = bound.get("random_state")
    if (name not in names or set(bound) - {"random_state"}
            or not (seed is None or (isinstance(seed, int) and not isinstance(seed, bool)))):
        raise PipelineError(
            f"{comp.name}.{param}={value!r} is not allowed. Give one of "
            f"{', '.join(names)}, or seed it as "
            f"{{name: {names[-1]}, random_state: 42}}."
        )
    return name, bound


def _nested_steps(comp: Component, param: str, value: Any) -> list[dict]:
    """Validate a nested list of steps; return it normalised as plain data."""
    if not isinstance(value, list) or not value:
        raise PipelineError(
            f"{comp.name}.{param} must be a non-empty list of steps "
            f"({{name, from, parameters}}), got {value!r}."
        )
    steps = [StepSpec.model_validate(s) for s in value]
    for s in steps:
        sub = COMPONENTS[s.name]
        if sub.role == "meta":
            raise PipelineError(f"{sub.name} cannot be nested in {comp.name}.")
        if not hasattr(sub.cls, "transform"):
            raise PipelineError(
                f"{sub.name} cannot be used inside {comp.name}: every nested "
                "step must be a transformer (have a transform method)."
            )
    last = COMPONENTS[steps[-1].name]
    if last.stateless and not hasattr(last.cls, "__sklearn_is_fitted__"):
        # FilterBank calls transform on the fitted nested Pipeline, which
        # sklearn refuses when its last step has no fitted state to check.
        raise PipelineError(
            f"{last.name} cannot be the last step inside {comp.name}: "
            "scikit-learn would report the nested pipeline as never fitted. "
            "End it with a step that learns from data (e.g. CSP, TangentSpace)."
        )
    return [_step_data(s) for s in steps]


def _check_plain(value: Any, where: str) -> None:
    # Specs are data: they must survive a YAML / JSON round trip unchanged.
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        for v in value:
            _check_plain(v, where)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, where)
            _check_plain(v, where)
        return
    raise PipelineError(
        f"{where}: values must be plain data (numbers, strings, booleans, "
        f"None, lists, mappings), got {type(value).__name__} {value!r}."
    )


def _check_estimator(est: Any, where: str) -> None:
    """Run the estimator's own parameter checks now rather than at fit time."""
    # scikit-learn estimators declare constraints; pyriemann / MOABB ones do
    # not, so their common mistakes are checked here from library data.
    if getattr(est, "_parameter_constraints", None) is not None:
        try:
            est._validate_params()
        except (ValueError, TypeError) as err:
            raise PipelineError(f"{where}: {err}") from None
    comp = COMPONENTS.get(type(est).__name__)
    if comp is not None and comp.name == "Covariances":
        valid = _covariance_estimators()
        if not callable(est.estimator) and est.estimator not in valid:
            raise PipelineError(
                f"{where}: Covariances estimator={est.estimator!r} is not "
                f"valid. Valid estimators: {', '.join(sorted(valid))}."
            )


def _step_data(step: StepSpec) -> dict[str, Any]:
    data = {"name": step.name, "from": step.from_}
    if step.parameters:
        data["parameters"] = step.parameters
    return data


class PipelineSpec(_Spec):
    """A decoding pipeline in MOABB's YAML format.

    Parameters
    ----------
    name : str
        Display name; it does not affect :meth:`digest`.
    paradigms : list of str
        MOABB paradigms the pipeline applies to. Defaults to the motor
        imagery paradigms matching :attr:`paradigm_kind`.
    citations : list of str
        References (DOIs / URLs).
    steps : list of StepSpec
        The steps (YAML key ``pipeline``); the last one is a classifier.
    param_grid : dict or None
        Grid-search values keyed ``<step>__<param>``, with step names as
        generated by :func:`~sklearn.pipeline.make_pipeline` (lower-cased
        class names, e.g. ``svc__C``), as in MOABB.

    Raises
    ------
    PipelineError
        On construction, for any invalid content.

    Examples
    --------
    >>> spec = PipelineSpec.from_yaml('''
    ... name: TS+LR
    ... pipeline:
    ...   - {name: Covariances, from: pyriemann.estimation,
    ...      parameters: {estimator: oas}}
    ...   - {name: TangentSpace, from: pyriemann.tangentspace}
    ...   - {name: LogisticRegression, from: sklearn.linear_model}
    ... ''')
    >>> [name for name, _ in spec.build().steps]
    ['covariances', 'tangentspace', 'logisticregression']
    """

    name: str
    paradigms: list[str] | None = None
    citations: list[str] = Field(default_factory=list)
    steps: list[StepSpec] = Field(alias="pipeline")
    param_grid: dict[str, list[Any]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _none_lists(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("citations", []) is None:
            data = {**data, "citations": []}
        return data

    @model_validator(mode="after")
    def _check(self) -> PipelineSpec:
        if not self.steps:
            raise PipelineError(
                f"Pipeline {self.name!r} is empty: give at least a classifier."
            )
        last = COMPONENTS[self.steps[-1].name]
        if last.role != "classifier":
            classifiers = [c.name for c in COMPONENTS.values() if c.role == "classifier"]
            raise PipelineError(
                f"The last step of {self.name!r} must be a classifier, not "
                f"{last.name} ({last.role}). Classifiers: {', '.join(classifiers)}."
            )
        for step in self.steps[:-1]:
            if not hasattr(COMPONENTS[step.name].cls, "transform"):
                raise PipelineError(
                    f"{step.name} can only be the last step of a pipeline: it "
                    "has no transform method."
                )
        valid = _PARADIGMS[self.paradigm_kind]
        if self.paradigms is None:
            self.paradigms = list(valid)
        bad = [p for p in self.paradigms if p not in valid]
        if bad or not self.paradigms:
            raise PipelineError(
                f"Paradigms {self.paradigms} do not fit {self.name!r}, a "
                f"{self.paradigm_kind} pipeline: list one or more of "
                f"{', '.join(valid)}."
            )
        if self.param_grid is not None:
            _check_param_grid(self)
        return self

    @property
    def paradigm_kind(self) -> str:
        """``"filterbank"`` if a step is a FilterBank, else ``"standard"``."""
        if any(s.name == "FilterBank" for s in self.steps):
            return "filterbank"
        return "standard"

    def build(self) -> Pipeline:
        """Build a new, unfitted scikit-learn pipeline.

        Returns
        -------
        pipeline : sklearn.pipeline.Pipeline
            Made with :func:`~sklearn.pipeline.make_pipeline`, so steps are
            named like in MOABB (``covariances``, ``csp``, ...).
        """
        return make_pipeline(*(s._instantiate() for s in self.steps))

    def to_dict(self) -> dict[str, Any]:
        """Return the spec as plain data with MOABB's YAML keys."""
        data: dict[str, Any] = {"name": self.name, "paradigms": list(self.paradigms)}
        if self.citations:
            data["citations"] = list(self.citations)
        data["pipeline"] = [_step_data(s) for s in self.steps]
        if self.param_grid is not None:
            data["param_grid"] = self.param_grid
        return copy.deepcopy(data)  # callers may edit it freely

    def to_yaml(self) -> str:
        """Return the spec as MOABB-compatible YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str) -> PipelineSpec:
        """Parse and validate a MOABB YAML pipeline.

        Parameters
        ----------
        text : str
            YAML text with keys ``name``, ``paradigms``, ``citations``,
            ``pipeline`` and ``param_grid``.

        Returns
        -------
        spec : PipelineSpec

        Raises
        ------
        PipelineError
            If the text is not YAML, is larger than :data:`YAML_MAX_BYTES`,
            nests deeper than :data:`YAML_MAX_DEPTH`, or would expand (through
            aliases) to more than :data:`YAML_MAX_NODES` nodes, or is not a
            valid pipeline.
        """
        data = _safe_load_bounded(text)
        if not isinstance(data, dict):
            raise PipelineError(
                "A pipeline file must be a YAML mapping with keys name, "
                f"paradigms, citations, pipeline, param_grid; got {type(data).__name__}."
            )
        return cls.model_validate(data)

    def digest(self) -> str:
        """Return a stable SHA-256 of what the pipeline computes.

        Only the steps and ``param_grid`` count, not the name, paradigms or
        citations. Parameters equal to the class default are dropped and
        numbers compared as floats, so ``C: 1`` and an omitted ``C`` (default
        1.0) give the same digest.

        Returns
        -------
        digest : str
            Hex digest of the canonical JSON.
        """
        content = {
            "steps": [_canonical_step(_step_data(s)) for s in self.steps],
            "param_grid": _canonical_value(self.param_grid),
        }
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def _canonical_value(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical_value(v) for v in value]
    return value


def _canonical_step(step: dict[str, Any]) -> dict[str, Any]:
    comp = COMPONENTS[step["name"]]
    params = {}
    for param, value in step.get("parameters", {}).items():
        if param in comp.nested:
            params[param] = [_canonical_step(s) for s in value]
            continue
        value = _canonical_value(value)
        if value != _canonical_value(_jsonable(comp.parameters[param])):
            params[param] = value
    return {"name": step["name"], "parameters": params}


def _grid_keys(pipeline: Pipeline, steps: Iterable[StepSpec], prefix: str = "") -> dict:
    """Map every searchable ``step__param`` key to its (component, param)."""
    keys = {}
    for (step_name, _), step in zip(pipeline.steps, steps):
        comp = COMPONENTS[step.name]
        for param in comp.parameters:
            key = f"{prefix}{step_name}__{param}"
            if param in comp.nested:
                nested = [StepSpec.model_validate(s) for s in step.parameters[param]]
                sub = pipeline.named_steps[step_name].get_params()[param]
                keys.update(_grid_keys(sub, nested, prefix=f"{key}__"))
            else:
                keys[key] = (comp, param)
    return keys


def _check_param_grid(spec: PipelineSpec) -> None:
    pipeline = spec.build()
    valid = _grid_keys(pipeline, spec.steps)
    for key, values in spec.param_grid.items():
        if key not in valid:
            raise PipelineError(
                f"param_grid key {key!r} of {spec.name!r} does not name a step "
                f"parameter. Valid keys: {', '.join(valid)}."
            )
        comp, param = valid[key]
        if param in comp.functions:
            raise PipelineError(
                f"param_grid key {key!r}: {comp.name}.{param} names a function "
                "and cannot be grid-searched; set it in the step instead."
            )
        if not values:
            raise PipelineError(f"param_grid[{key!r}] must list at least one value.")
        owner = key.rsplit("__", 1)[0]
        for value in values:
            _check_plain(value, f"param_grid[{key!r}]")
            candidate = clone(pipeline).set_params(**{key: value})
            _check_estimator(
                candidate.get_params()[owner], f"param_grid[{key!r}]={value!r}"
            )


# ---------------------------------------------------------------------------
# Files and the canonical pipelines
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# Bounded YAML
# ---------------------------------------------------------------------------

#: Largest pipeline text accepted, in bytes (MOABB's pipelines are < 2 KB).
YAML_MAX_BYTES = 64 * 1024
#: Deepest nesting of lists / mappings accepted (pipelines need < 10).
YAML_MAX_DEPTH = 32
#: Most YAML nodes a pipeline may hold once its aliases are expanded. PyYAML
#: shares an aliased object instead of copying it, so a "billion laughs" file
#: loads quickly but every later walk (validation, hashing, JSON) visits the
#: full expansion; the budget bounds that expansion, not just the text.
YAML_MAX_NODES = 10_000
#: Most alias uses (``*name``) accepted.
YAML_MAX_ALIASES = 100


class _BoundedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses bombs while composing the node graph.

    It counts nesting depth, alias uses and the size of each node once its
    aliases are expanded, and raises :class:`PipelineError` as soon as a
    limit is passed, before anything is constructed; so a hostile or broken
    file costs milliseconds and never recurses deep enough to exhaust the
    Python stack.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._expanded: dict[int, int] = {}  # id(node) -> nodes once expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > YAML_MAX_ALIASES:
                raise PipelineError(
                    f"Pipeline YAML uses more than {YAML_MAX_ALIASES} aliases (*name); "
                    "write the values out instead of referencing anchors."
                )
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise PipelineError(
                f"Pipeline YAML nests deeper than {YAML_MAX_DEPTH} levels (line "
                f"{mark.line + 1}); a pipeline needs only a few levels."
            )
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._count(node)
        return node

    def _count(self, node):
        key = id(node)
        if key in self._expanded:  # an alias: its target was counted already
            size = self._expanded[key]
        elif isinstance(node, yaml.ScalarNode):
            size = 1
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self._expanded.get(id(item), 1) for item in node.value)
        else:  # MappingNode
            size = 1 + sum(self._expanded.get(id(k), 1) + self._expanded.get(id(v), 1)
                           for k, v in node.value)
        self._expanded[key] = size
        if size > YAML_MAX_NODES:
            raise PipelineError(
                f"Pipeline YAML expands to more than {YAML_MAX_NODES} nodes (through "
                f"aliases at line {node.start_mark.line + 1}); a pipeline has a few "
                "dozen. Is this an alias bomb ('billion laughs')?"
            )


def _safe_load_bounded(text: str) -> Any:
    """``yaml.safe_load`` with the size, depth, alias and expansion limits."""
    if not isinstance(text, str):
        raise PipelineError(f"Pipeline YAML must be text, got {type(text).__name__}.")
    size = len(text.encode("utf-8", errors="replace"))
    if size > YAML_MAX_BYTES:
        raise PipelineError(
            f"Pipeline YAML is {size} bytes; the limit is {YAML_MAX_BYTES} bytes "
            "(MOABB's pipeline files are under 2 KB)."
        )
    loader = _BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as err:
        raise PipelineError(f"Pipeline file is not valid YAML: {err}") from None
    finally:
        loader.dispose()


def load_pipeline(path: str | PathLike) -> PipelineSpec:
    """Read and validate a MOABB YAML pipeline file.

    Parameters
    ----------
    path : str or path-like
        The ``.yml`` file.

    Returns
    -------
    spec : PipelineSpec

    Raises
    ------
    PipelineError
        For an invalid file, naming what is wrong (e.g. the component that
        is not registered). MOABB's Python pipeline files (``FBCSP.py``) are
        refused: they are code, which chatbci never runs; the message names
        what they use that a YAML pipeline cannot express.
    """
    path = Path(path)
    if path.suffix == ".py":
        raise PipelineError(_python_file_refusal(path))
    # Refuse a huge file before reading it into memory.
    size = path.stat().st_size
    if size > YAML_MAX_BYTES:
        raise PipelineError(
            f"Pipeline file {path} is {size} bytes; the limit is {YAML_MAX_BYTES} bytes "
            "(MOABB's pipeline files are under 2 KB)."
        )
    return PipelineSpec.from_yaml(path.read_text(encoding="utf-8"))


def save_pipeline(spec: PipelineSpec, path: str | PathLike) -> Path:
    """Write ``spec`` as a MOABB YAML pipeline file.

    Parameters
    ----------
    spec : PipelineSpec
        The pipeline.
    path : str or path-like
        Destination ``.yml`` file (overwritten).

    Returns
    -------
    path : pathlib.Path
        The written file.
    """
    path = Path(path)
    path.write_text(spec.to_yaml(), encoding="utf-8")
    return path


#: Names of the canonical pipelines, in display order.
_CANONICAL_NAMES = (
    "CSP+LDA", "TS+LR", "TS+SVM", "MDM", "FgMDM", "FBCSP+SVM", "ACM+TS+SVM",
)


@functools.cache
def _shipped() -> dict[str, PipelineSpec]:
    files = resources.files("chatbci.bci").joinpath("pipeline_files")
    specs = {}
    for entry in sorted(files.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yml"):
            spec = PipelineSpec.from_yaml(entry.read_text(encoding="utf-8"))
            specs[spec.name] = spec
    # canonical pipelines first, in display order, then the variants
    order = {name: i for i, name in enumerate(_CANONICAL_NAMES)}
    return dict(sorted(specs.items(), key=lambda kv: order.get(kv[0], len(order))))


def __getattr__(name: str) -> Any:
    # CANONICAL / VARIANTS are loaded on first use: validating them imports
    # MOABB, which would otherwise slow down every import of this module.
    # Deep copies, so editing them cannot change what get_pipeline returns.
    if name == "CANONICAL":
        return {n: _shipped()[n].model_copy(deep=True) for n in _CANONICAL_NAMES}
    if name == "VARIANTS":
        return {
            n: s.model_copy(deep=True)
            for n, s in _shipped().items()
            if n not in _CANONICAL_NAMES
        }
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _key(name: str) -> str:
    return "".join(name.split()).lower()


def get_pipeline(name: str) -> PipelineSpec:
    """Return a copy of a shipped pipeline spec.

    Parameters
    ----------
    name : str
        One of the canonical names ``"CSP+LDA"``, ``"TS+LR"``, ``"TS+SVM"``,
        ``"MDM"``, ``"FgMDM"``, ``"FBCSP+SVM"``, ``"ACM+TS+SVM"`` or a variant
        (``"TS+SVM-grid"``, ``"FBCSP+SVM-grid"``); case and spaces are
        ignored.

    Returns
    -------
    spec : PipelineSpec
        A deep copy, safe to modify.

    Notes
    -----
    Parameters are those of MOABB's benchmark pipeline files. ``TS+SVM`` is
    MOABB's ``TSSVM.yml`` (linear SVC, C=1, no grid); ``TS+SVM-grid`` is
    ``TSSVM_grid.yml`` (svc__C in [0.5, 1, 1.5], svc__kernel in [rbf,
    linear]). ``FBCSP+SVM`` uses a linear SVC with C=1; ``FBCSP+SVM-grid``
    searches C over ``logspace(-2, 2, 10)`` as MOABB's ``FBCSP.py`` does
    with an inner GridSearchCV. ``ACM+TS+SVM`` carries MOABB's grid over the
    augmentation order and lag (1..10 each) and the SVC.
    """
    shipped = _shipped()
    by_key = {_key(n): n for n in shipped}
    if not isinstance(name, str) or _key(name) not in by_key:
        raise PipelineError(
            f"Unknown pipeline {name!r}. Valid names: {', '.join(shipped)}."
        )
    return shipped[by_key[_key(name)]].model_copy(deep=True)


def canonical_pipelines(names: Iterable[str] | None = None) -> dict[str, Pipeline]:
    """Build shipped pipelines.

    Parameters
    ----------
    names : iterable of str or None
        Names accepted by :func:`get_pipeline`; None builds the seven
        canonical pipelines.

    Returns
    -------
    pipelines : dict
        Display name -> new unfitted :class:`~sklearn.pipeline.Pipeline`.
    """
    specs = [get_pipeline(n) for n in (_CANONICAL_NAMES if names is None else names)]
    return {spec.name: spec.build() for spec in specs}


# ---------------------------------------------------------------------------
# Introspection of built pipelines: what code runs, what is left to chance
# ---------------------------------------------------------------------------


def _named_parts(obj: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    """``(path, part)`` for ``obj`` and every estimator or function inside it.

    Paths are those of ``set_params`` / a ``param_grid`` (``svc``,
    ``filterbank__estimator__csp``). Walks pipelines, meta-estimators
    (FilterBank, GridSearchCV, ensembles) and function parameters such as
    ``SelectKBest.score_func``.
    """
    yield path, obj
    if isinstance(obj, Pipeline):
        children = list(obj.steps)
    elif hasattr(obj, "get_params") and not isinstance(obj, type):
        children = []
        for name, value in obj.get_params(deep=False).items():
            if isinstance(value, (list, tuple)):  # e.g. VotingClassifier.estimators
                children += [(f"{name}__{v[0]}" if isinstance(v, tuple) else name,
                              v[-1] if isinstance(v, tuple) else v) for v in value]
            else:
                children.append((name, value))
    else:
        return
    for name, value in children:
        if (hasattr(value, "get_params") and not isinstance(value, type)) or callable(value):
            yield from _named_parts(value, f"{path}__{name}" if path else name)


@functools.lru_cache(maxsize=1)
def _packages_distributions() -> dict:
    """Top-level module -> distributions, read once per process.

    Reading every installed distribution's file list takes 0.15 s on an idle
    machine (seconds under load); asked once per module, a cold benchmark of
    four pipelines spent 2.5 s here.
    """
    from importlib.metadata import packages_distributions

    return packages_distributions()


@functools.lru_cache(maxsize=None)
def _distribution(module: str) -> tuple[str, str] | None:
    """``(distribution, version)`` installing ``module``, unless it is edited in place.

    A module of an editable install (``pip install -e``) or of no
    installed distribution (a script, a notebook, a folder on ``sys.path``)
    has no version that changes with its code: None.
    """
    from importlib.metadata import distribution

    top = module.split(".", 1)[0]
    for name in _packages_distributions().get(top, []):
        dist = distribution(name)
        try:  # PEP 610: how the distribution was installed
            direct = json.loads(dist.read_text("direct_url.json") or "{}")
        except ValueError:
            direct = {}
        if (direct.get("dir_info") or {}).get("editable"):
            # chatbci itself: its engine changes are versioned by ENGINE_VERSION.
            if top == "chatbci":
                return name, dist.version
            return None
        return name, dist.version
    return None


def _code_bytes(code) -> bytes:
    """A stable byte string of a code object: instructions, names, constants.

    Not ``marshal``: its output depends on reference counts, which differ
    between processes. Line numbers are left out (a moved method computes
    the same); nested code (lambdas, comprehensions) is included.
    """
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        if inspect.iscode(const):
            parts.append(_code_bytes(const))
        elif isinstance(const, frozenset):  # set order varies with hash seeds
            parts.append(repr(sorted(map(repr, const))).encode())
        else:
            parts.append(repr(const).encode())
    return b"\0".join(parts)


def _functions_of(obj: Any) -> list:
    """The functions that define ``obj``: itself, or a class's methods.

    Decorated functions are unwrapped (scikit-learn wraps ``transform`` of
    every TransformerMixin for ``set_output``): the code that matters is
    the user's, not the wrapper's.
    """
    if not isinstance(obj, type):
        attrs = [obj]
    else:
        attrs = []
        for _, attr in sorted(vars(obj).items()):
            if isinstance(attr, property):
                attrs += [f for f in (attr.fget, attr.fset, attr.fdel) if f is not None]
            else:
                attrs.append(attr)
    found = []
    for attr in attrs:
        attr = getattr(attr, "__func__", attr)  # staticmethod / classmethod / bound
        try:
            attr = inspect.unwrap(attr)
        except ValueError:  # a __wrapped__ cycle: keep the outer function
            pass
        if hasattr(attr, "__code__"):
            found.append(attr)
    return found


def _code_digest(obj: Any) -> str:
    """Hash of the source and of the loaded code of a class or function.

    Both count: the source holds what bytecode misses (class constants,
    comments aside), the loaded code is what actually runs (a module file
    edited but not re-imported still runs its old code). Source is
    unavailable for classes typed into a notebook cell; then the code alone.
    """
    h = hashlib.sha256()
    try:
        h.update(inspect.getsource(obj).encode())
    except (OSError, TypeError):
        h.update(b"<source not available>")
        if isinstance(obj, type):  # class constants, which only the source shows
            plain = {k: repr(v) for k, v in vars(obj).items() if not k.startswith("__")
                     and isinstance(v, (bool, int, float, str, bytes, tuple, type(None)))}
            h.update(json.dumps(plain, sort_keys=True).encode())
    for func in _functions_of(obj):
        h.update(func.__qualname__.encode() + b"\0" + _code_bytes(func.__code__))
    return h.hexdigest()


def code_identity(estimator: Any) -> dict[str, Any]:
    """What identifies the code a pipeline runs, for cache keys.

    Code from an installed library (scikit-learn, pyRiemann, MNE, MOABB...)
    is identified by the version of its distribution. Code that is not
    (a transformer in a script or notebook, a module edited in place under an
    editable install) is identified by a hash of its source and of its loaded
    bytecode, so a change of its code, with the same class name and
    parameters, changes the identity.

    Parameters
    ----------
    estimator : estimator instance
        A pipeline or any scikit-learn estimator; nested estimators,
        their classes' base classes and function parameters are included.

    Returns
    -------
    identity : dict
        ``{"packages": {distribution: version}, "code": {"module.qualname":
        sha256}}``, JSON-able and sorted.
    """
    packages: dict[str, str] = {}
    code: dict[str, str] = {}
    seen: set[int] = set()
    for _, part in _named_parts(estimator):
        targets = [part] if callable(part) and not hasattr(part, "get_params") else []
        if hasattr(part, "get_params"):
            targets = [c for c in type(part).__mro__ if c is not object]
        if isinstance(part, functools.partial):
            targets = [part.func]
        for target in targets:
            if id(target) in seen:
                continue
            seen.add(id(target))
            module = getattr(target, "__module__", None) or "__main__"
            if module == "builtins":
                continue
            dist = _distribution(module)
            if dist is not None:
                packages[dist[0]] = dist[1]
            else:
                code[f"{module}.{getattr(target, '__qualname__', repr(target))}"] = \
                    _code_digest(target)
    return {"packages": dict(sorted(packages.items())), "code": dict(sorted(code.items()))}


#: Parameters under which scikit-learn estimators use no randomness although
#: they take a ``random_state`` (its documentation: "ignored when ...").
_RANDOMNESS_UNUSED: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    # scikit-learn 1.9 deprecates ``probability`` (default "deprecated").
    "SVC": lambda p: p.get("probability") is not True,
    "NuSVC": lambda p: p.get("probability") is not True,
    "LogisticRegression": lambda p: p.get("solver", "lbfgs") not in ("sag", "saga",
                                                                     "liblinear"),
}

#: Functions, used as parameters (SelectKBest's score_func), that draw random
#: numbers unless given a ``random_state``: MOABB's FBCSP uses the first.
_RANDOM_FUNCTIONS = ("mutual_info_classif", "mutual_info_regression")


def unseeded_randomness(estimator: Any, param_grid: Mapping | list | None = None):
    """Parts of a pipeline that draw random numbers without a seed.

    Such a pipeline scores differently on every run even on the same folds.
    Detected: any estimator whose ``random_state`` is None (or searched over
    a grid that includes None), except where scikit-learn documents it as
    unused (SVC without ``probability``, LogisticRegression with a
    deterministic solver, also when the grid never enables them), and
    ``mutual_info_classif`` as a ``score_func`` without a bound
    ``random_state`` (it adds random noise to continuous features).

    Parameters
    ----------
    estimator : estimator instance
        The pipeline (nested estimators are searched).
    param_grid : dict | list of dict | None
        Its grid, keyed like ``set_params``.

    Returns
    -------
    found : list of dict
        ``{"path": "randomforestclassifier", "what": "RandomForestClassifier",
        "step": "RandomForestClassifier", "how": "random_state: 42"}``: ``step``
        is the class of the step that holds it, ``how`` what to write in its
        YAML parameters to seed it (``score_func: {name: mutual_info_classif,
        random_state: 42}`` for a function), None where a YAML file cannot
        (then :func:`seed_pipeline` can).
    """
    grids = param_grid if isinstance(param_grid, list) else [param_grid or {}]

    def values(path, name, current):
        # The values a parameter takes in the search: a grid that sets it
        # replaces the pipeline's own value.
        key = f"{path}__{name}" if path else name
        out = []
        for grid in grids:
            out += list(grid[key]) if key in grid else [current]
        return out

    found = []
    parts = dict(_named_parts(estimator))
    for path, part in parts.items():
        if hasattr(part, "get_params") and not isinstance(part, type):
            params = part.get_params(deep=False)
            if "random_state" not in params:
                continue
            if all(v is not None for v in values(path, "random_state", params["random_state"])):
                continue
            rule = _RANDOMNESS_UNUSED.get(type(part).__name__)
            if rule is not None:
                deciding = {"probability", "solver"} & set(params)
                combos = [{}] + [{k: v} for k in deciding
                                 for v in values(path, k, params[k])]
                if all(rule({**params, **c}) for c in combos):
                    continue
            found.append({"path": path, "what": type(part).__name__,
                          "step": type(part).__name__, "how": "random_state: 42"})
        elif callable(part):
            func = part.func if isinstance(part, functools.partial) else part
            bound = part.keywords if isinstance(part, functools.partial) else {}
            if getattr(func, "__name__", "") in _RANDOM_FUNCTIONS and \
                    bound.get("random_state") is None:
                param = path.rsplit("__", 1)[-1]
                yaml_ok = func.__name__ in _SCORE_FUNCS[1]  # what a YAML step may name
                owner = parts.get(path.rsplit("__", 1)[0] if "__" in path else "")
                found.append({"path": path, "what": func.__name__,
                              "step": type(owner).__name__,
                              "how": (f"{param}: {{name: {func.__name__}, random_state: 42}}"
                                      if yaml_ok else None)})
    return found


def seed_pipeline(estimator: Any, random_state: int = 42) -> Any:
    """A copy of a pipeline with every unseeded source of randomness seeded.

    Sets each ``random_state`` left None (nested estimators included) and
    binds ``random_state`` into ``mutual_info_classif`` used as a
    ``score_func``, so the pipeline scores the same on every run.

    Parameters
    ----------
    estimator : estimator instance
        The pipeline; not modified.
    random_state : int
        The seed to set.

    Returns
    -------
    seeded : estimator instance
        An unfitted clone.

    Examples
    --------
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> seed_pipeline(RandomForestClassifier(), 7).random_state
    7
    """
    seeded = clone(estimator)
    updates = {}
    for item in unseeded_randomness(seeded):
        path, part = item["path"], dict(_named_parts(seeded))[item["path"]]
        if not hasattr(part, "get_params"):  # a function: bind the seed into it
            func = part.func if isinstance(part, functools.partial) else part
            kwargs = dict(getattr(part, "keywords", {}) or {}, random_state=random_state)
            updates[path] = functools.partial(func, **kwargs)
        else:
            updates[f"{path}__random_state" if path else "random_state"] = random_state
    # Shallow paths first: setting a parent must not undo a child's seed.
    for key in sorted(updates, key=lambda k: k.count("__")):
        seeded.set_params(**{key: updates[key]})
    return seeded


# ---------------------------------------------------------------------------
# MOABB's own pipeline files: which run here, and why the others do not
# ---------------------------------------------------------------------------

#: Names a MOABB Python pipeline file may import that are structure, not
#: components (pipeline assembly, numbers).
_STRUCTURE = {"make_pipeline", "Pipeline", "np", "numpy"}

#: chatbci's YAML equivalents of MOABB's Python pipeline files.
_MOABB_EQUIVALENTS = MappingProxyType({"FBCSP.py": "FBCSP+SVM-grid"})

#: Every motor-imagery paradigm a MOABB pipeline file can list.
_MI_PARADIGMS = frozenset(p for kind in _PARADIGMS.values() for p in kind)


def _python_imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of each ``from module import name`` in a Python file.

    Parsed with :mod:`ast`, never executed.
    """
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(node.module or "", alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) for alias in node.names]


def _python_pipeline_dict(path: Path) -> dict[str, Any]:
    """The literal ``name`` and ``paradigms`` of a MOABB Python file's ``PIPELINE``.

    Read from the syntax tree with :func:`ast.literal_eval`; nothing runs.
    """
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
                and any(isinstance(t, ast.Name) and t.id == "PIPELINE" for t in node.targets)):
            out = {}
            for key, value in zip(node.value.keys, node.value.values):
                if isinstance(key, ast.Constant) and key.value in ("name", "paradigms"):
                    with contextlib.suppress(ValueError):
                        out[key.value] = ast.literal_eval(value)
            return out
    return {}


def _missing_components(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """``"Name (module)"`` for each imported name that is not a usable component."""
    allowed_functions = {n for _, (_, names) in
                         ((c.name, f) for c in COMPONENTS.values() for f in c.functions.values())
                         for n in names}
    missing = []
    for module, name in pairs:
        comp = COMPONENTS.get(name)
        if comp is not None and comp.module == module:
            continue
        if name in _STRUCTURE or name in allowed_functions:
            continue
        missing.append(f"{name} ({module})")
    return missing


def _python_file_refusal(path: Path) -> str:
    missing = _missing_components(_python_imports(path))
    equivalent = _MOABB_EQUIVALENTS.get(path.name)
    return (
        f"{path.name} is a Python pipeline file: chatbci never runs pipeline code, "
        "only YAML pipelines made of registered components."
        + (f" It uses what a YAML pipeline cannot express: {', '.join(missing)}."
           if missing else "")
        + (f" Use chatbci's YAML equivalent {equivalent!r} (get_pipeline)." if equivalent
           else " Write it as a YAML pipeline (see list_components()).")
    )


def moabb_pipeline_support(folder: str | PathLike) -> list[dict[str, Any]]:
    """Which of MOABB's pipeline files run in chatbci, and why the others do not.

    Parameters
    ----------
    folder : path-like
        MOABB's ``pipelines/`` folder (not installed with MOABB; in its
        repository).

    Returns
    -------
    rows : list of dict
        One per ``.yml`` / ``.py`` file, sorted by file name: ``file``,
        ``name`` (MOABB's pipeline name, when readable), ``paradigms``,
        ``motor_imagery`` (whether it lists a motor-imagery paradigm),
        ``runs`` and ``reason`` (why not: the missing components, the
        paradigm, or that it is Python code).
    """
    rows = []
    for path in sorted(Path(folder).iterdir(), key=lambda p: p.name.lower()):
        if path.suffix not in (".yml", ".yaml", ".py"):
            continue
        row: dict[str, Any] = {"file": path.name, "name": None, "paradigms": [],
                               "motor_imagery": False, "runs": False, "reason": ""}
        if path.suffix == ".py":
            described = _python_pipeline_dict(path)
            row["name"] = described.get("name")
            row["paradigms"] = list(described.get("paradigms") or [])
            row["motor_imagery"] = bool(set(row["paradigms"]) & _MI_PARADIGMS)
            row["reason"] = _python_file_refusal(path)
            rows.append(row)
            continue
        raw = _safe_load_bounded(path.read_text(encoding="utf-8"))
        row["name"] = raw.get("name") if isinstance(raw, dict) else None
        row["paradigms"] = list(raw.get("paradigms") or []) if isinstance(raw, dict) else []
        row["motor_imagery"] = bool(set(row["paradigms"]) & _MI_PARADIGMS)
        try:
            load_pipeline(path)
        except PipelineError as err:
            steps = raw.get("pipeline") or [] if isinstance(raw, dict) else []
            missing = _missing_components(
                (s.get("from", ""), s.get("name", "")) for s in steps if isinstance(s, dict))
            reason = (f"needs {', '.join(missing)}, not a registered component"
                      if missing else str(err))
            if not row["motor_imagery"]:
                reason = (f"not motor imagery ({', '.join(row['paradigms']) or 'no paradigm'}); "
                          + reason)
            row["reason"] = reason
        else:
            row["runs"] = True
        rows.append(row)
    return rows


def moabb_pipelines_markdown(folder: str | PathLike, source: str = "") -> str:
    """``docs/moabb-pipelines.md``: :func:`moabb_pipeline_support` as a page.

    Parameters
    ----------
    folder : path-like
        MOABB's ``pipelines/`` folder.
    source : str
        Where the folder comes from (repository and commit), for the page.

    Returns
    -------
    text : str
        Markdown, ending with a newline.
    """
    rows = moabb_pipeline_support(folder)

    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = [
        "# MOABB's pipeline files in chatbci",
        "",
        "<!-- Generated by chatbci.bci.pipelines.moabb_pipelines_markdown; "
        "tests/test_engine_edge_cases.py checks it is current. -->",
        "",
        "MOABB ships example pipelines in its repository's `pipelines/` folder "
        "(MOABB 1.7.2 does not install them)"
        + (f"; this list is made from {source}" if source else "") + ". chatbci reads "
        "MOABB's YAML format (`load_pipeline`) but only with registered components "
        "(`list_components()`), and never runs Python pipeline files. Pipelines that "
        "run are evaluated with MOABB's folds and scorer; MOABB's `LogVar.yml`, and "
        "LogVariance+LDA and AugmentedDataset+Covariances+TangentSpace+SVC, are checked "
        "against plain MOABB in the tests. Filter-bank pipelines see every band here, "
        "MOABB 1.7.2's evaluations only the first (`make_process_pipelines(...)[0]`), so "
        "their scores can differ from MOABB's; every run of one says so in its "
        "`engine_notes`, and so does the methods section.",
        "",
        "| File | MOABB name | Paradigms | Runs in chatbci | Why not |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append("| " + " | ".join([
            f"`{row['file']}`", cell(row["name"] or "–"),
            cell(", ".join(row["paradigms"]) or "–"),
            "yes" if row["runs"] else "no", cell(row["reason"] or "–"),
        ]) + " |")
    n_mi = sum(r["motor_imagery"] for r in rows)
    n_run = sum(r["runs"] for r in rows)
    lines += ["", f"{n_run} of the {n_mi} motor-imagery pipeline files run; the other "
              f"{len(rows) - n_mi} files are for other paradigms (SSVEP, P300).", ""]
    return "\n".join(lines)
