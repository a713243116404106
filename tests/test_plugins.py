"""What the user brings: plugin packages really installed with pip (the example of docs/plugins.md and a
package of bad plugins), callables by import path and by file path, names and their clashes, signature
checks before any call, and safe_evaluate's failure kinds with messages that name the culprit."""

from __future__ import annotations

import math
import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import gapbench as gb
from gapbench.errors import GapbenchError
from gapbench.plugins import QuantityError, plugins, reload_plugins, resolve, safe_evaluate

DOCS = Path(__file__).parents[1] / "docs" / "plugins.md"
SRC = Path(gb.__file__).parents[1]

BAD_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "gapbench-bad-plugins"
version = "0.2"

[project.entry-points."gapbench.measures"]
spectral_product = "bad_plugins:spectral_product"
raising_measure = "bad_plugins:raises"
nan_measure = "bad_plugins:nan"
text_measure = "bad_plugins:text"
wrong_signature = "bad_plugins:wrong_signature"
missing_dependency = "bad_plugins.needs_missing:anything"

[project.entry-points."gapbench.bounds"]
float_bound = "bad_plugins:float_bound"
"""

BAD_MODULE = """\
def spectral_product(model, data, init=None):
    return 42.0

def raises(model, data, init=None):
    raise RuntimeError("the plugin's own bug")

def nan(model, data, init=None):
    return float("nan")

def text(model, data, init=None):
    return "0.3"

def wrong_signature(model):
    return 1.0

def float_bound(model, data, *, delta):
    return 0.5
"""


def doc_files(markdown: str) -> dict[str, str]:
    """The files docs/plugins.md shows, each a code block after a '<!-- file: PATH -->' line."""
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", markdown, flags=re.S))


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Both packages installed with pip into a fresh target directory (not on sys.path until a test asks)."""
    root = tmp_path_factory.mktemp("plugins")
    example = write_package(root / "example", doc_files(DOCS.read_text()))
    bad = write_package(root / "bad", {"pyproject.toml": BAD_PYPROJECT, "bad_plugins/__init__.py": BAD_MODULE,
                                       "bad_plugins/needs_missing.py": "import nosuch_dependency_xyz\n"})
    target = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", "--target", str(target), str(example), str(bad)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture
def installed(site, monkeypatch):
    """The installed plugins visible to this process, forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(site))
    reload_plugins()
    yield site
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.split(".")[0] in ("gapbench_example", "bad_plugins")]:
        del sys.modules[name]
    reload_plugins()


@pytest.fixture
def model_and_data():
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn(40, 4, generator=gen)
    return model, (x, torch.randint(0, 3, (40,), generator=gen))


def test_the_docs_example_is_a_complete_package():
    assert set(doc_files(DOCS.read_text())) == {"pyproject.toml", "gapbench_example/__init__.py"}


def test_gapbench_list_shows_plugins_with_their_package_and_broken_ones(site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "gapbench", "list", "all"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("  ")}
    assert "[plugin gapbench-example 0.1.0] the Euclidean norm of all parameters" in lines["example_weight_norm"]
    assert "[plugin gapbench-example 0.1.0] Hoeffding 1963" in lines["example_heldout_hoeffding"]
    assert "[plugin gapbench-bad-plugins 0.2]" in lines["text_measure"]
    clash = lines["gapbench-bad-plugins/spectral_product"]
    assert "the name 'spectral_product' is taken: use gapbench-bad-plugins/spectral_product" in clash
    assert lines["spectral_product"].split()[1] == "[norm]"           # the built-in keeps the bare name
    missing = lines["missing_dependency"]
    assert "BROKEN [plugin gapbench-bad-plugins 0.2]" in missing
    assert "failed to import: ModuleNotFoundError: No module named 'nosuch_dependency_xyz'" in missing
    assert "cannot be called as a measure: its signature is (model)" in lines["wrong_signature"]


def test_plugins_resolve_and_evaluate(installed, model_and_data):
    model, data = model_and_data
    norm = resolve("example_weight_norm")
    assert (norm.kind, norm.origin, norm.needs) == ("measure", "plugin gapbench-example 0.1.0", ())
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()
    assert norm(model, data) == pytest.approx(float(torch.linalg.vector_norm(flat)), rel=1e-12)
    hoeffding = resolve("example_heldout_hoeffding")
    assert (hoeffding.kind, hoeffding.needs) == ("bound", ("data",))
    for delta in (0.01, 0.3):
        ours = hoeffding.bound(model, data, delta=delta)
        theirs = gb.bound("heldout_hoeffding", model, data, delta=delta)      # gapbench's own implementation
        assert ours.delta == delta and ours.value == pytest.approx(theirs.value, rel=1e-12)
        assert hoeffding(model, data, delta=delta) == ours.value


def test_the_example_bound_covers_at_its_delta_by_monte_carlo(installed):
    """A fixed classifier whose true error is exactly p: the bound is below p in at most about delta of the
    draws of n held-out points (Hoeffding is conservative, so far fewer)."""
    p, n, delta, draws = 0.3, 50, 0.1, 500
    model = nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0], [-1.0]]))        # predicts class 0 for x > 0
    gen = torch.Generator().manual_seed(1)
    hoeffding = resolve("example_heldout_hoeffding")
    below = 0
    for _ in range(draws):
        x = torch.rand(n, 1, generator=gen) + 0.1
        y = (torch.rand(n, generator=gen) < p).long()             # label 1 (an error) with probability p
        below += hoeffding(model, (x, y), delta=delta) < p
    assert below / draws <= delta


def test_a_builtin_name_wins_and_the_plugin_is_reached_by_its_package(installed, model_and_data):
    model, data = model_and_data
    assert resolve("spectral_product").origin == "gapbench"
    for spec in ("gapbench-bad-plugins/spectral_product", "Gapbench_Bad.Plugins/spectral_product"):
        plugin = resolve(spec)
        assert plugin.origin == "plugin gapbench-bad-plugins 0.2" and plugin(model, data) == 42.0
    assert resolve("bound/pacbayes_kl").kind == "bound" and resolve("measure/pacbayes_kl").kind == "measure"
    with pytest.raises(GapbenchError, match=r"'pacbayes_kl' names 2 quantities: measure/pacbayes_kl, "
                                            r"bound/pacbayes_kl\. Give one of these names, or kind="):
        resolve("pacbayes_kl")
    assert resolve("pacbayes_kl", kind="bound").kind == "bound"


def test_bad_plugins_fail_clearly_and_the_others_go_on(installed, model_and_data):
    model, data = model_and_data
    specs = ["missing_dependency", "wrong_signature", "raising_measure", "nan_measure", "text_measure",
             "float_bound", "example_weight_norm", "example_heldout_hoeffding"]
    outcomes = {spec: safe_evaluate(spec, model, data) for spec in specs}
    assert outcomes["example_weight_norm"].ok and outcomes["example_heldout_hoeffding"].ok
    assert outcomes["example_heldout_hoeffding"].bound.delta == 0.05
    failures = {spec: (o.failure.kind, o.failure.message) for spec, o in outcomes.items() if not o.ok}
    named = "measure '{}' (plugin gapbench-bad-plugins 0.2"
    expected = {
        "missing_dependency": ("import", r"failed to import: ModuleNotFoundError: No module named "
                                         r"'nosuch_dependency_xyz'\. Fix or reinstall the package"),
        "wrong_signature": ("signature", r"cannot be called as a measure: its signature is \(model\) \(too many "
                                         r"positional arguments\)\. A measure must accept \(model, data, "
                                         r"init=None\)"),
        "raising_measure": ("raised", r"raised RuntimeError: the plugin's own bug \(at __init__\.py:5 in raises\)"
                                      r"\. Fix the function"),
        "nan_measure": ("non_finite", r"returned nan for this model\. A measure must be finite"),
        "text_measure": ("return_type", r"returned str '0\.3'\. A measure must return a float and a bound a "
                                        r"gapbench\.Bound; convert the result"),
        "float_bound": ("return_type", r"returned the float 0\.5, but a bound must return a gapbench\.Bound"),
    }
    assert set(failures) == set(expected)
    for spec, (kind, pattern) in expected.items():
        assert failures[spec][0] == kind, spec
        label = named.format(spec).replace("measure", "bound") if spec == "float_bound" else named.format(spec)
        assert failures[spec][1].startswith(label), failures[spec][1]
        assert re.search(pattern, failures[spec][1]), failures[spec][1]
    raised = outcomes["raising_measure"].failure
    assert raised.exception == "RuntimeError" and "in raises" in raised.traceback
    assert [p.name for p in plugins() if p.quantity is None] == ["missing_dependency", "wrong_signature"]


def test_a_callable_by_import_path(tmp_path, monkeypatch, model_and_data):
    model, data = model_and_data
    (tmp_path / "my_measures.py").write_text("def count(model, data, init=None, *, scale=1.0):\n"
                                             "    return scale * sum(p.numel() for p in model.parameters())\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    q = resolve("my_measures:count")
    assert (q.name, q.kind, q.origin, q.kind_from, q.needs) == ("count", "measure", "my_measures:count",
                                                                "signature", None)
    assert q(model, data) == gb.measure("num_params", model) and q(model, data, scale=2.0) == 2 * 67
    with pytest.raises(QuantityError, match=r"Unknown function 'cont' in 'my_measures'\. Did you mean 'count'\?"):
        resolve("my_measures:cont")
    with pytest.raises(QuantityError, match=r"Cannot import the module 'no_such_module' of 'no_such_module:f': "
                                            r"ModuleNotFoundError.*give the file: 'path/to/file\.py:function'"):
        resolve("no_such_module:f")


def test_a_callable_in_a_file_anywhere(tmp_path, monkeypatch, model_and_data):
    model, data = model_and_data
    folder = tmp_path / "a folder with spaces"
    folder.mkdir()
    (folder / "mine.py").write_text(textwrap.dedent("""\
        import math
        from gapbench import Bound

        def constant_bound(model, data, *, delta):
            n = data[1].shape[0]
            return Bound("constant_bound", 0.5 + math.sqrt(math.log(1 / delta) / (2 * n)), delta, "test error")
        """))
    q = resolve(f"{folder}/mine.py:constant_bound")
    assert (q.kind, q.kind_from, q.origin) == ("bound", "signature", f"{folder}/mine.py:constant_bound")
    assert q(model, data, delta=0.1) == pytest.approx(0.5 + math.sqrt(math.log(10) / 80))
    monkeypatch.chdir(tmp_path)
    assert resolve("a folder with spaces/mine.py:constant_bound").fn is q.fn       # loaded once
    assert pickle.loads(pickle.dumps(q)) == q                                    # re-resolved by its path
    with pytest.raises(QuantityError, match=r"The file '.*nowhere\.py' of 'nowhere\.py:f' does not exist"):
        resolve("nowhere.py:f")
    (folder / "broken.py").write_text("raise ValueError('half written')\n")
    with pytest.raises(QuantityError, match=r"Cannot load '.*broken\.py' for '.*': ValueError: half written"):
        resolve(f"{folder}/broken.py:f")


def test_unknown_names_suggest_the_closest(installed):
    with pytest.raises(GapbenchError, match=r"Unknown measure or bound name 'spectral_prodct'\. Did you mean "
                                            r"'spectral_product'\?.*'module\.path:function'"):
        resolve("spectral_prodct")
    with pytest.raises(GapbenchError, match=r"Did you mean 'example_weight_norm'\?"):
        resolve("example_weight_nrm")
    with pytest.raises(GapbenchError, match=r"Unknown built-in bound 'spectral_product'"):
        resolve("bound/spectral_product")
    with pytest.raises(GapbenchError, match=r"The 'spec' parameter of resolve\(\) must be a non-empty string"):
        resolve(" ")
    with pytest.raises(GapbenchError, match=r"The 'kind' parameter of resolve\(\) must be one of"):
        resolve("error", kind="metric")
    assert safe_evaluate("spectral_prodct", None).failure.kind == "import"


def test_signatures_are_checked_before_any_call(tmp_path):
    (tmp_path / "sigs.py").write_text(textwrap.dedent("""\
        CALLS = []
        def four(model, data, init, extra):
            CALLS.append(1)
        def required_keyword(model, data, init=None, *, q):
            CALLS.append(1)
        def bound_without_delta(model, data) -> "Bound":
            CALLS.append(1)
        NOT_CALLABLE = 3
        def calls(model, data, init=None):
            return len(CALLS)
        """))
    messages = {
        "four": r"measure 'four' \(.*sigs\.py:four\) cannot be called as a measure: its signature is "
                r"\(model, data, init, extra\) \(missing a required argument: 'extra'\)",
        "required_keyword": r"missing a required argument: 'q'\)\. A measure must accept .* extra keyword-only "
                            r"parameters need defaults",
        "bound_without_delta": r"bound 'bound_without_delta' .* cannot be called as a bound: .*got an unexpected "
                               r"keyword argument 'delta'",
        "NOT_CALLABLE": r"is a int, not a function",
    }
    for attr, pattern in messages.items():
        with pytest.raises(QuantityError, match=pattern) as err:
            resolve(f"{tmp_path}/sigs.py:{attr}")
        assert err.value.failure == "signature"
    calls = resolve(f"{tmp_path}/sigs.py:calls")          # the same module, loaded once
    assert calls(None) == 0.0                               # none of the refused functions ran


def test_kind_from_annotation_forced_declared_and_the_first_return(tmp_path, model_and_data):
    model, data = model_and_data
    (tmp_path / "kinds.py").write_text(textwrap.dedent("""\
        import math
        from gapbench import Bound, declare
        def annotated(model, data, init=None, **kw) -> Bound:
            return Bound("annotated", 0.25, kw["delta"], "test error")
        def measure_with_delta(model, data, *, delta):
            return 0.7
        def wrong_delta(model, data, *, delta):
            return Bound("wrong_delta", 0.1, 0.5, "test error")
        def vacuous(model, data, *, delta):
            return Bound("vacuous", math.inf, delta, "test error")
        def nan_bound(model, data, *, delta):
            return Bound("nan_bound", math.nan, delta, "test error")
        @declare(kind="measure", needs=("data", "search"))
        def declared(model, data, init=None, **kw):
            return 1.5
        """))
    path = f"{tmp_path}/kinds.py"
    annotated = resolve(f"{path}:annotated")
    assert (annotated.kind, annotated.kind_from, annotated(model, data, delta=0.2)) == ("bound", "annotation", 0.25)
    guessed = safe_evaluate(f"{path}:measure_with_delta", model, data)
    assert (guessed.kind, guessed.value) == ("measure", 0.7)             # the return type decided
    declared = resolve(f"{path}:declared")
    assert (declared.kind, declared.kind_from, declared.needs) == ("measure", "registered", ("data", "search"))
    forced = safe_evaluate(resolve(f"{path}:measure_with_delta", kind="bound"), model, data)
    assert forced.failure.kind == "return_type"
    with pytest.raises(QuantityError, match=r"is declared kind='measure' but is used as a bound"):
        resolve(f"{path}:declared", kind="bound")
    with pytest.raises(QuantityError, match=r"returned a Bound at delta=0\.5 when asked for delta=0\.05\. A bound "
                                            r"must hold at the delta it is given"):
        resolve(f"{path}:wrong_delta")(model, data)
    assert resolve(f"{path}:vacuous")(model, data) == math.inf               # a vacuous bound is a bound
    assert safe_evaluate(f"{path}:nan_bound", model, data).failure.kind == "non_finite"
    with pytest.raises(GapbenchError, match=r"is a measure: it returns a float, not a Bound"):
        declared.bound(model, data)
    with pytest.raises(GapbenchError, match=r"The 'delta' parameter of bound 'annotated' must be a float in "
                                            r"\(0, 1\)\. Got 1\.5 instead"):
        annotated(model, data, delta=1.5)
    assert len({annotated, declared}) == 2                                  # hashable (a dict key)


def test_builtins_evaluate_as_the_registry_does(model_and_data):
    model, data = model_and_data
    q = resolve("margin_quantile")
    assert (q.origin, q.needs, q.builtin) == ("gapbench", ("data",), True)
    assert q(model, data, q=0.2) == gb.measure("margin_quantile", model, data, q=0.2)
    assert resolve("pacbayes_sharpness").needs == ("data", "search")
    assert resolve("bartlett2017_complexity").needs == ("data", "init")
    bias_free = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    init = {k: v + 0.01 for k, v in bias_free.state_dict().items()}
    assert resolve("bartlett2017")(bias_free, data, init, delta=0.1) == gb.bound(
        "bartlett2017", bias_free, data, delta=0.1, init=init).value
    refused = safe_evaluate("dist_from_init_fro", model, data)
    assert refused.failure.kind == "raised" and refused.failure.exception == "GapbenchError"
    assert refused.failure.message.startswith("measure 'dist_from_init_fro' (gapbench) does not apply here: The "
                                              "'init' parameter")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    resolve("frobenius_product")(model, data)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_declare_checks_its_arguments():
    with pytest.raises(GapbenchError, match=r"The 'kind' parameter of declare\(\) must be one of \['measure', "
                                            r"'bound'\]\. Got 'metric' instead"):
        gb.declare(kind="metric")
    with pytest.raises(GapbenchError, match=r"The 'needs' parameter of declare\(\) must be a tuple of names from "
                                            r"\('data', 'init', 'search'\)\. Got \('gpu',\) instead"):
        gb.declare(needs=("gpu",))
