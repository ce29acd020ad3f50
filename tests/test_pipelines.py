"""Tests of the component registry, MOABB-style pipeline specs and canonical pipelines."""

from __future__ import annotations

import json

import numpy as np
import pytest
from moabb.pipelines.features import AugmentedDataset
from moabb.pipelines.utils import FilterBank
from pyriemann.classification import MDM, FgMDM
from pyriemann.estimation import Covariances
from pyriemann.spatialfilters import CSP
from pyriemann.tangentspace import TangentSpace
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis as LDA
from sklearn.feature_selection import SelectKBest, mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.svm import SVC

from chatbci.bci.pipelines import (
    CANONICAL,
    COMPONENTS,
    VARIANTS,
    PipelineError,
    PipelineSpec,
    StepSpec,
    canonical_pipelines,
    get_component,
    get_pipeline,
    is_stateless,
    list_components,
    load_pipeline,
    needs_filterbank,
    save_pipeline,
)

CANONICAL_NAMES = ["CSP+LDA", "TS+LR", "TS+SVM", "MDM", "FgMDM", "FBCSP+SVM", "ACM+TS+SVM"]

# MOABB's pipelines/TSSVM_grid.yml, verbatim.
MOABB_TSSVM_GRID = """\
name: Tangent Space SVM Grid

paradigms:
  - LeftRightImagery
  - MotorImagery

citations:
  - https://doi.org/10.1016/j.neucom.2012.12.039

pipeline:
  - name: Covariances
    from: pyriemann.estimation
    parameters:
      estimator: oas

  - name: TangentSpace
    from: pyriemann.tangentspace
    parameters:
      metric: "riemann"

  - name: SVC
    from: sklearn.svm
    parameters:
      kernel: "linear"


param_grid:
  svc__C:
    - 0.5
    - 1
    - 1.5
  svc__kernel:
    - "rbf"
    - "linear"
"""

TS_LR = """\
name: mine
paradigms: [LeftRightImagery]
pipeline:
  - {name: Covariances, from: pyriemann.estimation, parameters: {estimator: oas}}
  - {name: TangentSpace, from: pyriemann.tangentspace}
  - {name: LogisticRegression, from: sklearn.linear_model}
"""


def _data(filterbank=False, n=40, seed=0):
    """Random epochs with a class-dependent variance so classes are separable."""
    rng = np.random.default_rng(seed)
    shape = (n, 8, 256, 3) if filterbank else (n, 8, 256)
    X = rng.standard_normal(shape)
    y = np.repeat([0, 1], n // 2)
    X[y == 1, :2] *= 3.0  # class 1: more power on two channels
    return X, y


def _same_steps(built: Pipeline, expected: Pipeline) -> None:
    assert [n for n, _ in built.steps] == [n for n, _ in expected.steps]
    for (_, a), (_, b) in zip(built.steps, expected.steps):
        assert type(a) is type(b)
        assert a.get_params(deep=False) == b.get_params(deep=False)


# --- registry ---------------------------------------------------------------


def test_registry_contents_and_listing():
    required = {
        "Covariances", "CSP", "FilterBank", "TangentSpace", "MDM", "FgMDM",
        "LinearDiscriminantAnalysis", "SVC", "LogisticRegression",
        "AugmentedDataset", "SelectKBest",
    }
    assert required <= set(COMPONENTS)
    assert get_component("LDA") is COMPONENTS["LinearDiscriminantAnalysis"]
    assert get_component("CSP").cls is CSP
    assert get_component("FilterBank").cls is FilterBank
    assert get_component("AugmentedDataset").module == "moabb.pipelines.features"
    # parameters come from the classes, not typed by hand
    assert dict(get_component("SVC").parameters) == SVC().get_params()
    assert dict(get_component("CSP").parameters) == CSP().get_params()
    assert get_component("FilterBank").required == ("estimator",)

    listing = json.loads(json.dumps(list_components()))  # JSON-serialisable
    by_name = {c["name"]: c for c in listing}
    assert set(by_name) == set(COMPONENTS)
    assert by_name["SelectKBest"]["parameters"]["score_func"] == "f_classif"
    assert by_name["Covariances"]["from"] == "pyriemann.estimation"
    assert by_name["SVC"]["role"] == "classifier"
    assert by_name["SVC"]["parameters"]["C"] == 1.0
    assert "mutual_info_classif" in by_name["SelectKBest"]["choices"]["score_func"]
    assert "oas" in by_name["Covariances"]["choices"]["estimator"]
    assert all(c["description"] for c in listing)


def test_stateless_flags():
    assert COMPONENTS["Covariances"].stateless
    assert COMPONENTS["AugmentedDataset"].stateless
    assert not COMPONENTS["CSP"].stateless
    assert not COMPONENTS["TangentSpace"].stateless
    assert not COMPONENTS["FilterBank"].stateless
    assert not any(c.stateless for c in COMPONENTS.values() if c.role == "classifier")


def test_is_stateless_on_built_steps():
    steps = dict(get_pipeline("ACM+TS+SVM").build().steps)
    assert is_stateless(steps["augmenteddataset"]) and is_stateless(steps["covariances"])
    assert not is_stateless(steps["tangentspace"]) and not is_stateless(steps["svc"])
    assert is_stateless(make_pipeline(AugmentedDataset(), Covariances()))
    assert is_stateless(FilterBank(make_pipeline(Covariances("oas"))))
    assert not is_stateless(FilterBank(make_pipeline(Covariances("oas"), CSP())))

    class MyCovariances(Covariances):  # subclasses may change transform
        pass

    assert not is_stateless(MyCovariances())
    assert needs_filterbank(get_pipeline("FBCSP+SVM").build())
    assert not needs_filterbank(get_pipeline("CSP+LDA").build())


@pytest.mark.parametrize("name", [n for n, c in COMPONENTS.items() if c.stateless])
def test_stateless_components_ignore_training_data(name):
    """A stateless step transforms an epoch the same whatever it was fitted on."""
    comp = COMPONENTS[name]
    X, y = _data()
    if comp.role == "covariance" and name != "Covariances":
        X = Covariances("oas").transform(X)  # expects matrices
    params = {"order": 3, "lag": 2} if name == "AugmentedDataset" else {}
    a = comp.cls(**params).fit(X[:20], y[:20]).transform(X[-5:])
    b = comp.cls(**params).fit(X[10:], y[10:]).transform(X[-5:])
    np.testing.assert_array_equal(a, b)
    one = comp.cls(**params).fit(X, y).transform(X[-5:-4])  # epoch by epoch
    np.testing.assert_array_equal(a[:1], one)


# --- canonical pipelines ----------------------------------------------------


def test_canonical_names_and_lookup():
    assert list(CANONICAL) == CANONICAL_NAMES
    assert "TS+SVM-grid" in VARIANTS
    assert get_pipeline(" ts + lr ").name == "TS+LR"
    assert get_pipeline("fbcsp+svm").paradigm_kind == "filterbank"
    assert get_pipeline("MDM").paradigm_kind == "standard"
    spec = get_pipeline("MDM")
    spec.steps[0].parameters["estimator"] = "scm"  # copies: the shipped spec is unchanged
    CANONICAL["MDM"].steps[0].parameters["estimator"] = "scm"
    assert get_pipeline("MDM").steps[0].parameters["estimator"] == "oas"
    with pytest.raises(PipelineError, match=r"Unknown pipeline 'EEGNet'.*CSP\+LDA.*ACM\+TS\+SVM"):
        get_pipeline("EEGNet")
    built = canonical_pipelines(["csp+lda", "TS+SVM-grid"])
    assert list(built) == ["CSP+LDA", "TS+SVM-grid"]
    assert list(canonical_pipelines()) == CANONICAL_NAMES


@pytest.mark.parametrize("name", CANONICAL_NAMES + ["TS+SVM-grid", "FBCSP+SVM-grid"])
def test_canonical_round_trip_fit_predict(name, tmp_path):
    spec = get_pipeline(name)
    again = PipelineSpec.from_yaml(spec.to_yaml())
    assert again.digest() == spec.digest()
    assert again.to_dict() == spec.to_dict()
    loaded = load_pipeline(save_pipeline(spec, tmp_path / "p.yml"))
    assert loaded.digest() == spec.digest()

    X, y = _data(filterbank=spec.paradigm_kind == "filterbank")
    pipe = spec.build()
    assert isinstance(pipe, Pipeline)
    pred = pipe.fit(X[::2], y[::2]).predict(X[1::2])
    assert pred.shape == (20,)
    assert set(pred) <= {0, 1}
    assert (pred == y[1::2]).mean() > 0.7  # the variance difference is learnt
    if spec.param_grid:  # MOABB's keys address the built pipeline
        pipe.set_params(**{k: v[-1] for k, v in spec.param_grid.items()})


def test_canonical_match_moabb_hand_made():
    _same_steps(
        get_pipeline("CSP+LDA").build(),
        make_pipeline(Covariances(estimator="oas"), CSP(nfilter=6), LDA(solver="svd")),
    )
    _same_steps(
        get_pipeline("TS+LR").build(),
        make_pipeline(
            Covariances(estimator="oas"), TangentSpace(metric="riemann"),
            LogisticRegression(C=1.0),
        ),
    )
    _same_steps(
        get_pipeline("MDM").build(),
        make_pipeline(Covariances(estimator="oas"), MDM(metric="riemann")),
    )
    _same_steps(
        get_pipeline("FgMDM").build(),
        make_pipeline(Covariances(estimator="oas"), FgMDM(metric="riemann")),
    )
    ts_svm = get_pipeline("TS+SVM")
    assert ts_svm.param_grid is None
    _same_steps(
        ts_svm.build(),
        make_pipeline(Covariances("oas"), TangentSpace(metric="riemann"), SVC(kernel="linear")),
    )
    assert get_pipeline("TS+SVM-grid").param_grid == {
        "svc__C": [0.5, 1, 1.5], "svc__kernel": ["rbf", "linear"]
    }

    fb = get_pipeline("FBCSP+SVM").build()
    expected = make_pipeline(
        FilterBank(make_pipeline(Covariances(estimator="oas"), CSP(nfilter=4))),
        SelectKBest(score_func=mutual_info_classif, k=10),
        SVC(kernel="linear"),
    )
    _same_steps(fb[1:], expected[1:])
    _same_steps(fb[0].estimator, expected[0].estimator)
    assert fb[0].flatten is True

    acm = get_pipeline("ACM+TS+SVM")
    _same_steps(
        acm.build(),
        make_pipeline(
            AugmentedDataset(), Covariances(estimator="cov"),
            TangentSpace(metric="riemann"), SVC(kernel="rbf"),
        ),
    )
    assert acm.param_grid["augmenteddataset__order"] == list(range(1, 11))
    assert acm.param_grid["augmenteddataset__lag"] == list(range(1, 11))
    assert acm.param_grid["svc__C"] == [0.5, 1, 1.5]


# --- parsing and validation -------------------------------------------------


def test_parse_moabb_yaml_file():
    spec = PipelineSpec.from_yaml(MOABB_TSSVM_GRID)
    assert spec.name == "Tangent Space SVM Grid"
    assert spec.paradigms == ["LeftRightImagery", "MotorImagery"]
    assert spec.citations == ["https://doi.org/10.1016/j.neucom.2012.12.039"]
    assert [s.from_ for s in spec.steps] == [
        "pyriemann.estimation", "pyriemann.tangentspace", "sklearn.svm",
    ]
    assert spec.digest() == get_pipeline("TS+SVM-grid").digest()
    # written back with MOABB's keys
    assert set(spec.to_dict()) == {"name", "paradigms", "citations", "pipeline", "param_grid"}
    assert set(spec.to_dict()["pipeline"][0]) == {"name", "from", "parameters"}


def test_filterbank_nested_and_flatten():
    spec = PipelineSpec.from_yaml("""
name: FB-TS
pipeline:
  - name: FilterBank
    parameters:
      flatten: true
      estimator:
        - {name: Covariances, parameters: {estimator: lwf}}
        - {name: TangentSpace}
  - {name: LDA}
param_grid:
  filterbank__estimator__covariances__estimator: [oas, lwf]
  filterbank__flatten: [true]
""")
    assert spec.paradigms == ["FilterBankLeftRightImagery", "FilterBankMotorImagery"]
    assert spec.steps[0].from_ == "moabb.pipelines.utils"  # filled in
    assert spec.steps[1].name == "LinearDiscriminantAnalysis"  # alias resolved
    X, y = _data(filterbank=True)
    pipe = spec.build()
    assert pipe.fit(X, y).score(X, y) > 0.7
    assert pipe.get_params()["filterbank__estimator__covariances__estimator"] == "lwf"

    def fb(nested):
        return StepSpec(name="FilterBank", parameters={"estimator": nested})

    with pytest.raises(PipelineError, match="FilterBank cannot be nested"):
        fb([{"name": "FilterBank", "parameters": {"estimator": [{"name": "CSP"}]}}])
    with pytest.raises(PipelineError, match="LogVariance cannot be the last step"):
        fb([{"name": "LogVariance"}])  # sklearn's Pipeline would call it unfitted
    with pytest.raises(PipelineError, match="SVC cannot be used inside FilterBank"):
        fb([{"name": "Covariances"}, {"name": "SVC"}])
    with pytest.raises(PipelineError, match="needs parameter.*estimator"):
        StepSpec(name="FilterBank")
    with pytest.raises(PipelineError, match="do not fit.*FilterBankMotorImagery"):
        PipelineSpec.from_yaml(spec.to_yaml().replace("FilterBankLeftRight", "LeftRight"))


def test_unknown_component():
    text = TS_LR.replace("name: TangentSpace", "name: TangentSpaec")
    with pytest.raises(PipelineError) as err:
        PipelineSpec.from_yaml(text)
    msg = str(err.value)
    assert "'TangentSpaec'" in msg
    for valid in ("Covariances", "CSP", "TangentSpace", "SVC", "FilterBank"):
        assert valid in msg


def test_unknown_parameter():
    text = TS_LR.replace("parameters: {estimator: oas}", "parameters: {estimatr: oas}")
    with pytest.raises(PipelineError) as err:
        PipelineSpec.from_yaml(text)
    msg = str(err.value)
    assert "'estimatr'" in msg and "Covariances" in msg
    assert "Valid parameters: estimator" in msg


@pytest.mark.parametrize(
    "name, module",
    [("Covariances", "os"), ("Covariances", "subprocess"), ("system", "os"),
     ("SVC", "sklearn.linear_model")],
)
def test_forbidden_from_module(name, module):
    text = TS_LR.replace(
        "{name: Covariances, from: pyriemann.estimation",
        f"{{name: {name}, from: {module}",
    )
    with pytest.raises(PipelineError) as err:
        PipelineSpec.from_yaml(text)
    msg = str(err.value)
    if name in COMPONENTS:
        assert f"must come from {COMPONENTS[name].module!r}" in msg
    else:
        assert "Unknown component 'system'" in msg and "Covariances" in msg


def test_bad_param_grid_key():
    text = TS_LR + "param_grid:\n  logisticregresion__C: [0.1, 1.0]\n"
    with pytest.raises(PipelineError) as err:
        PipelineSpec.from_yaml(text)
    msg = str(err.value)
    assert "'logisticregresion__C'" in msg
    assert "logisticregression__C" in msg and "covariances__estimator" in msg


def test_values_validated_at_definition_time():
    with pytest.raises(PipelineError, match="kernel.*SVC.*rbff"):
        PipelineSpec.from_yaml(MOABB_TSSVM_GRID.replace('kernel: "linear"', "kernel: rbff"))
    with pytest.raises(PipelineError, match=r"param_grid\['svc__C'\]=-1"):
        PipelineSpec.from_yaml(TS_LR.replace("LogisticRegression, from: sklearn.linear_model",
                                             "SVC, from: sklearn.svm")
                               + "param_grid:\n  svc__C: [1, -1]\n")
    with pytest.raises(PipelineError, match="estimator='ledoit_wolf'.*Valid estimators:.*oas"):
        PipelineSpec.from_yaml(TS_LR.replace("estimator: oas", "estimator: ledoit_wolf"))
    with pytest.raises(PipelineError, match="estimator=3 is not valid"):
        StepSpec(name="Covariances", parameters={"estimator": 3})
    with pytest.raises(PipelineError, match="score_func='os.system'.*mutual_info_classif"):
        StepSpec(name="SelectKBest", parameters={"score_func": "os.system"})


def test_structural_errors():
    with pytest.raises(PipelineError, match="empty"):
        PipelineSpec(name="x", pipeline=[])
    with pytest.raises(PipelineError, match="last step.*classifier.*TangentSpace"):
        PipelineSpec(name="x", pipeline=[{"name": "Covariances"}, {"name": "TangentSpace"}])
    with pytest.raises(PipelineError, match="unknown key 'pipline'"):
        PipelineSpec.from_yaml(TS_LR.replace("pipeline:", "pipline:"))
    with pytest.raises(PipelineError, match="YAML mapping"):
        PipelineSpec.from_yaml("- just a list")
    with pytest.raises(PipelineError, match="plain data"):
        StepSpec(name="SVC", parameters={"C": object()})


def test_digest_stable_and_name_independent():
    a = PipelineSpec.from_yaml(TS_LR)
    b = PipelineSpec.from_yaml(TS_LR.replace("name: mine", "name: other"))
    assert a.digest() == b.digest() == get_pipeline("TS+LR").digest()  # C: 1.0 is the default
    assert len(a.digest()) == 64
    # python API and YAML agree; an explicit default changes nothing
    c = PipelineSpec(
        name="py",
        pipeline=[
            StepSpec(name="Covariances", parameters={"estimator": "oas"}),
            StepSpec(name="TangentSpace", parameters={"metric": "riemann"}),
            StepSpec(name="LogisticRegression", parameters={"C": 1}),
        ],
    )
    assert c.digest() == a.digest()
    d = PipelineSpec.from_yaml(TS_LR.replace("estimator: oas", "estimator: lwf"))
    assert d.digest() != a.digest()
    e = PipelineSpec.from_yaml(TS_LR + "param_grid:\n  logisticregression__C: [0.1, 1.0]\n")
    assert e.digest() != a.digest()
    # independent of the order parameters are written in
    f = PipelineSpec.from_yaml(TS_LR.replace(
        "{name: LogisticRegression, from: sklearn.linear_model}",
        "{name: LogisticRegression, parameters: {C: 2, max_iter: 500}}"))
    g = PipelineSpec.from_yaml(TS_LR.replace(
        "{name: LogisticRegression, from: sklearn.linear_model}",
        "{name: LogisticRegression, parameters: {max_iter: 500, C: 2.0}}"))
    assert f.digest() == g.digest() != a.digest()


# ---------------------------------------------------------------------------
# Hostile YAML: bounded before anything is built


def _billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    lines += ["name: bomb", "pipeline:", "  - name: Covariances",
              "    from: pyriemann.estimation", f"    parameters: {{estimator: *a{levels}}}"]
    return "\n".join(lines)


@pytest.mark.parametrize("levels", [4, 8, 12])
def test_alias_bomb_is_refused_fast(levels):
    import time

    t0 = time.perf_counter()
    with pytest.raises(PipelineError, match="expands to more than 10000 nodes"):
        PipelineSpec.from_yaml(_billion_laughs(levels))
    assert time.perf_counter() - t0 < 1.0


def test_deep_nesting_is_refused_without_recursion_error():
    import time

    t0 = time.perf_counter()
    with pytest.raises(PipelineError, match="nests deeper than 32 levels"):
        PipelineSpec.from_yaml("[" * 20_000 + "]" * 20_000)
    with pytest.raises(PipelineError, match="nests deeper"):
        PipelineSpec.from_yaml("".join(f"{' ' * 2 * i}k{i}:\n" for i in range(200)) + "  " * 200 + "v")
    assert time.perf_counter() - t0 < 2.0


def test_oversized_yaml_and_too_many_aliases_are_refused(tmp_path):
    from chatbci.bci.pipelines import YAML_MAX_BYTES

    big = TS_LR + "\n# " + "x" * YAML_MAX_BYTES
    with pytest.raises(PipelineError, match=f"limit is {YAML_MAX_BYTES} bytes"):
        PipelineSpec.from_yaml(big)
    path = tmp_path / "big.yml"
    path.write_text(big)
    with pytest.raises(PipelineError, match=r"big\.yml is \d+ bytes"):
        load_pipeline(path)
    many = "a: &a 1\nb: [" + ", ".join(["*a"] * 101) + "]\n"
    with pytest.raises(PipelineError, match="more than 100 aliases"):
        PipelineSpec.from_yaml(many)


def test_small_anchors_still_load():
    """Legitimate anchors (one value list used twice) are still read."""
    from chatbci.bci.pipelines import _safe_load_bounded

    assert _safe_load_bounded("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}
    assert PipelineSpec.from_yaml(MOABB_TSSVM_GRID).param_grid["svc__C"] == [0.5, 1, 1.5]
