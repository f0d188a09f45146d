"""The Python API shows progress by default, as the CLI does (tqdm.auto: a widget in a
notebook, text in a terminal), and stays quiet when asked."""
import fedpop
from fl.callbacks import ProgressBar
from tiny_tasks import LabelSkew

from test_api_process import SMALL


def test_a_progress_bar_comes_with_every_process_unless_turned_off():
    assert any(isinstance(cb, ProgressBar) for cb in fedpop.build_process(LabelSkew, SMALL).callbacks)
    assert not any(isinstance(cb, ProgressBar) for cb in fedpop.build_process(LabelSkew, SMALL, progress=False).callbacks)
    mine = ProgressBar(3, desc="mine")
    bars = [cb for cb in fedpop.build_process(LabelSkew, SMALL, callbacks=[mine]).callbacks if isinstance(cb, ProgressBar)]
    assert bars == [mine]  # a user's own bar is not doubled


def test_the_bar_counts_rounds_on_stderr(ray_local, cache_dir, capfd):
    with fedpop.build_process(LabelSkew, {**SMALL, "workers.cache_dir": cache_dir, "experiment.rounds": 2}) as p:
        p.run()
    err = capfd.readouterr().err
    assert "2/2" in err and "round" in err
