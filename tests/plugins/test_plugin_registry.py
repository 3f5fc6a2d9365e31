"""The registry: malformed declarations, duplicates, unknown ops, kernels that raise, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onnxforge import plugins
from onnxforge.runtime.modelio.card import ModelCard
from onnxforge.graphs import GraphBuilder, float_input
from onnxforge.plugins import Op, Plugin
from onnxforge.runtime import Trainer, load
from onnxforge.runtime.errors import ModelError, NotTrainableError, PluginError


def one_op_model(op_type: str, domain: str, **attrs):
    """x [N, 3] -> Gemm -> op -> y, a regression model."""
    b = GraphBuilder(seed=0)
    h = b.linear("fc1", "x", 3, 3)
    b.node(op_type, [h], ["y"], name="custom", domain=domain, **attrs)
    b.opsets[domain] = 1
    return b.model("m", [float_input("x", ["N", 3])], [float_input("y", ["N", 3])],
                   ModelCard(task="regression", output="y"))


@pytest.fixture
def registered():
    """Register plugins for one test and remove them afterwards."""
    names = []

    def add(plugin):
        plugins.register(plugin)
        names.append(plugin.name)
        return plugin

    yield add
    for name in names:
        plugins.unregister(name)


identity = [helper.make_node("Identity", ["X"], ["Y"])]


@pytest.mark.parametrize("kwargs, message", [
    (dict(domain="t", name="bad name", inputs=["X"], outputs=["Y"], body=identity), "name must be an identifier"),
    (dict(domain="", name="Op", inputs=["X"], outputs=["Y"], body=identity), "domain must be"),
    (dict(domain="com.microsoft", name="Op", inputs=["X"], outputs=["Y"], body=identity), "belongs to ONNX"),
    (dict(domain="t", name="Op", inputs=["X"], outputs=["Y"]), "has no implementation"),
    (dict(domain="t", name="Op", inputs=[], outputs=["Y"], body=identity), "at least one input"),
    (dict(domain="t", name="Op", inputs=["X", "X"], outputs=["Y"], body=identity), "unique"),
    (dict(domain="t", name="Op", inputs=[("X", "complex")], outputs=["Y"], body=identity), "has type 'complex'"),
    (dict(domain="t", name="Op", inputs=["X"], outputs=["Y"], version=0, body=identity), "version must be"),
    (dict(domain="t", name="Op", inputs=["X"], outputs=["Y"], body=[helper.make_node("Relu", ["Z"], ["Y"])]),
     "reads 'Z'"),
    (dict(domain="t", name="Op", inputs=["X"], outputs=["Y"], body=[helper.make_node("Relu", ["X"], ["T"])]),
     "never computes output 'Y'"),
    (dict(domain="t", name="Op", inputs=["X"], outputs=["Y"], body=[helper.make_node("NoSuchOp", ["X"], ["Y"])]),
     "not valid ONNX"),
    (dict(domain="t", name="Op", inputs=["X"], outputs=["Y"], attributes={"k": [1, 2]}, body=identity),
     "attribute 'k' needs a default"),
    (dict(domain="t", name="Op", inputs=["X"], outputs=["Y"], kernel="not callable"), "kernel must be callable"),
    (dict(domain="t", name="Op", inputs=["X"], outputs=["Y"], library="relative/libop.so"), "absolute path"),
])
def test_malformed_declaration_is_refused_with_the_reason(kwargs, message):
    with pytest.raises(PluginError, match="malformed declaration") as info:
        Op(**kwargs)
    assert message in str(info.value)


def test_duplicate_registration_names_the_op_and_both_plugins(registered):
    clash = Plugin("clash", [Op("onnxforge", "Swish", ["X"], ["Y"], body=identity)])
    with pytest.raises(PluginError, match=r"duplicate registration of op onnxforge\.Swish: plugin 'clash'.*'builtin'"):
        plugins.register(clash)
    assert "clash" not in plugins.installed_plugins()
    registered(Plugin("once", [Op("t.once", "A", ["X"], ["Y"], body=identity)]))
    with pytest.raises(PluginError, match="already registered"):
        plugins.register(Plugin("once", [Op("t.once2", "B", ["X"], ["Y"], body=identity)]))
    with pytest.raises(PluginError, match="declares op t.twice.A twice"):
        Plugin("twice", [Op("t.twice", "A", ["X"], ["Y"], body=identity)] * 2)


def test_unknown_op_fails_before_onnx_runtime_naming_op_domain_and_plugins():
    model = one_op_model("Frobnicate", "com.nowhere")
    with pytest.raises(ModelError) as info:
        load(model)
    text = str(info.value)
    assert "op Frobnicate of domain 'com.nowhere'" in text
    assert "builtin (Swish, Gelu, Mish" in text
    assert "ONNX Runtime" not in text  # our check ran first
    with pytest.raises(ModelError, match="Frobnicate"):
        Trainer(model, "unused-rundir")


def _weights(model):
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return init["fc1.weight"], init["fc1.bias"]


def test_model_local_function_needs_no_plugin():
    model = one_op_model("Own", "com.mine")
    model.functions.append(helper.make_function("com.mine", "Own", ["X"], ["Y"], [helper.make_node("Neg", ["X"], ["Y"])],
                                                [helper.make_opsetid("", 17)]))
    w, b = _weights(model)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    assert np.allclose(load(model).run({"x": x})["y"], -(x @ w.T + b), rtol=1e-5, atol=1e-6)


def test_kernel_that_raises_gives_a_clear_error_and_the_session_survives(registered):
    def finite_only(x):
        if not np.isfinite(x).all():
            raise ValueError("the input holds NaN or infinity")
        return x * x

    registered(Plugin("picky", [Op("t.picky", "Square", ["X"], ["Y"], kernel=finite_only)]))
    model = one_op_model("Square", "t.picky")
    w, b = _weights(model)
    session = load(model)
    with pytest.raises(PluginError) as info:
        session.run({"x": np.full((2, 3), np.nan, np.float32)})
    assert ("the Python kernel of op t.picky.Square (plugin 'picky') raised ValueError: "
            "the input holds NaN or infinity") in str(info.value)
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    for _ in range(2):  # the same session still runs, twice
        assert np.allclose(session.run({"x": x})["y"], (x @ w.T + b) ** 2, rtol=1e-5)
    with pytest.raises(PluginError, match="raised ValueError"):  # also through I/O binding
        session.run_on_device({"x": np.full((1, 3), np.inf, np.float32)})
    assert np.allclose(session.run_on_device({"x": x})["y"].numpy(), (x @ w.T + b) ** 2, rtol=1e-5)


def test_kernel_returning_the_wrong_number_of_outputs_is_a_plugin_error(registered):
    registered(Plugin("pair", [Op("t.pair", "Pair", ["X"], ["Y"], kernel=lambda x: (x, x))]))
    with pytest.raises(PluginError, match="returned 2 outputs; the op declares 1"):
        load(one_op_model("Pair", "t.pair")).run({"x": np.ones((1, 3), np.float32)})


def test_python_kernel_attributes_reach_the_kernel(registered):
    registered(Plugin("scale", [Op("t.scale", "Scale", ["X"], ["Y"], attributes={"k": 2.0, "shift": 0},
                                   kernel=lambda x, k, shift: x * k + shift)]))
    model = one_op_model("Scale", "t.scale", k=3.0, shift=1)
    w, b = _weights(model)
    x = np.random.default_rng(1).standard_normal((3, 3)).astype(np.float32)
    assert np.allclose(load(model).run({"x": x})["y"], (x @ w.T + b) * 3 + 1, rtol=1e-5)


def test_python_kernel_op_refuses_training_naming_the_op(tmp_path):
    model = one_op_model("LogGamma", "onnxforge")
    with pytest.raises(NotTrainableError) as info:
        Trainer(model, tmp_path / "run")
    assert "op onnxforge.LogGamma (node 'custom', plugin 'builtin') is implemented only by a Python kernel" \
        in str(info.value)
    assert not (tmp_path / "run").exists()


def test_missing_native_library_is_a_plugin_error(registered, tmp_path):
    registered(Plugin("ghost", [Op("t.ghost", "Ghost", ["X"], ["Y"], library=str(tmp_path / "libghost.so"))]))
    with pytest.raises(PluginError, match=r"native library .*libghost\.so declared by plugin 'ghost' does not exist"):
        load(one_op_model("Ghost", "t.ghost"))


def test_libraries_come_only_from_declarations_not_from_the_model(tmp_path):
    """A model can name an op, never a library: a path in its metadata or attributes is ignored."""
    model = one_op_model("Evil", "com.evil", library=str(tmp_path / "libevil.so"))
    helper.set_model_props(model, {"custom_op_library": str(tmp_path / "libevil.so")})
    with pytest.raises(ModelError, match="op Evil of domain 'com.evil'"):
        load(model)


def _fake_distribution(root, name: str, entry_points: dict, modules: dict) -> None:
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[onnxforge.plugins]\n{lines}\n")
    for module, code in modules.items():
        (root / f"{module}.py").write_text(code)


def test_discovery_loads_entry_points_and_reports_broken_or_clashing_ones(tmp_path, monkeypatch):
    header = "from onnx import helper\nfrom onnxforge.plugins import Op, Plugin\n"
    _fake_distribution(tmp_path, "fake-plugins", {
        "good": "fake_good:make",
        "broken": "fake_broken:plugin",
        "clash": "fake_clash:plugin",
    }, {
        "fake_good": header + "def make():\n    return Plugin('good', [Op('com.fake', 'Twice', ['X'], ['Y'], "
                              "body=[helper.make_node('Add', ['X', 'X'], ['Y'])])])\n",
        "fake_broken": "raise RuntimeError('this plugin is broken on purpose')\n",
        "fake_clash": header + "plugin = Plugin('clash', [Op('onnxforge', 'Swish', ['X'], ['Y'], "
                               "body=[helper.make_node('Identity', ['X'], ['Y'])])])\n",
    })
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        plugins.refresh()
        assert "good" in plugins.installed_plugins()
        problems = " | ".join(plugins.problems())
        assert "plugin 'broken'" in problems and "RuntimeError: this plugin is broken on purpose" in problems
        assert "plugin 'clash'" in problems and "duplicate registration of op onnxforge.Swish" in problems
        assert plugins.plugin_of(plugins.find_op("onnxforge.Swish")) == "builtin"
        model = one_op_model("Twice", "com.fake")
        w, b = _weights(model)
        x = np.random.default_rng(2).standard_normal((3, 3)).astype(np.float32)
        assert np.allclose(load(model).run({"x": x})["y"], 2 * (x @ w.T + b), rtol=1e-5)
    finally:
        monkeypatch.undo()
        plugins.refresh()
    assert "good" not in plugins.installed_plugins() and not plugins.problems()
