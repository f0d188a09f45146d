"""Layering: the engine (fl/) imports nothing from tasks, analytics or experiments."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPPER = ("clients", "analytics", "experiments", "fedpop")


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_no_engine_module_imports_an_upper_layer_anywhere():
    bad = [(p.name, m) for p in sorted((ROOT / "fl").glob("*.py")) for m in _imports(p)
           if m.split(".")[0] in UPPER]
    assert bad == []


def test_the_engine_imports_with_upper_layers_blocked():
    code = f"""
import importlib, importlib.abc, pkgutil, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in {UPPER!r}:
            raise ImportError('blocked upper layer: ' + name)
sys.meta_path.insert(0, Block())
import fl
for m in pkgutil.iter_modules(fl.__path__):
    importlib.import_module('fl.' + m.name)
from fl.config import load_config
load_config({{}}, ['experiment.task=fl.task:Task'])  # config loads for an import-path task
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "missing required method(s): build_model" in out.stderr, out.stderr[-2000:]
    assert "blocked upper layer" not in out.stderr, out.stderr[-2000:]


def test_the_process_has_no_secure_aggregation_branch():
    """Secure summation is one more aggregator (fl/summation.py, fl/secure_sum.py): the
    round loop in fl/process.py only calls the aggregator's summation."""
    import inspect

    import fl.process

    source = inspect.getsource(fl.process)
    for needle in ('"secagg"', "from secagg", "import secagg", "fl.secure_sum", "plan_secure_round", "run_server"):
        assert needle not in source, needle


def test_the_tensorboard_writer_does_not_import_tensorflow(tmp_path):
    """The coordinator writes TensorBoard scalars without TensorFlow (~600 MB resident when
    imported); the events read back with TensorBoard's own reader."""
    import subprocess
    import sys

    code = ("import sys; from fl.results import TensorBoardWriter; "
            f"w = TensorBoardWriter({str(tmp_path)!r}); w.scalars(3, {{'loss': 1.5, 'ok': True}}); w.close(); "
            "print('tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert acc.Tags()["scalars"] == ["loss"] and [(e.step, e.value) for e in acc.Scalars("loss")] == [(3, 1.5)]


PROJECT = ("fl", "fedpop", "clients", "analytics", "experiments", "secagg", "report")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_imports(path: Path, name: str):
    """Every module an import statement names, at module level or inside a function (an import
    deferred into a function is still a dependency), except under ``if TYPE_CHECKING:``."""
    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                yield from (a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    package = name.split(".")[:len(name.split(".")) - child.level + (path.name == "__init__.py")]
                    base = ".".join(package + ([child.module] if child.module else []))
                else:
                    base = child.module
                yield base
                yield from (f"{base}.{a.name}" for a in child.names)
            yield from visit(child)
    yield from visit(ast.parse(path.read_text()))


def test_no_import_circle_among_the_projects_modules():
    """Static analysis of every import statement: the module graph is acyclic (an import inside a
    function does not hide a circle here)."""
    modules = {_module_name(p): p for pkg in PROJECT for p in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for target in _all_imports(path, name):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                deps.add(target)
        graph[name] = deps
    state, stack, circles = {}, [], []

    def walk(v):
        state[v] = 1
        stack.append(v)
        for w in sorted(graph[v]):
            if state.get(w) == 1:
                circles.append(stack[stack.index(w):] + [w])
            elif w not in state:
                walk(w)
        stack.pop()
        state[v] = 2

    for v in sorted(graph):
        if v not in state:
            walk(v)
    assert circles == [], "\n".join(" -> ".join(c) for c in circles)
