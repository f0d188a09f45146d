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
