"""fedpop's public Python API, shaped like ``tff.learning``.

    import fedpop

    class MyTask(fedpop.Task):
        def build_model(self): ...                      # a Keras model
        def device_data(self, device_id, n, split): ... # {"x": ..., "y": ...}

    with fedpop.build_process(MyTask, {"experiment.rounds": 5}) as process:
        state = process.initialize()
        state, metrics = process.next(state)
    process.rounds, process.clients                     # pandas DataFrames

A population built from the user's own dataset (``data=``: `FederatedData`, a DataFrame,
LEAF JSON or a TFF ClientData) is always available by default; ``population.availability:
phone`` switches on the phone-like availability, dropout and clock model.  Rounds that
cannot do what was asked warn once per cause (`RunWarning`).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # quiet TensorFlow on CPU hosts, as the CLI does
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

from fedpop.api import Process, build_process  # noqa: E402
from fl.aggregators import Aggregator  # noqa: E402
from fl.algorithms import Algorithm  # noqa: E402
from fl.callbacks import (Callback, Checkpointer, EarlyStopping, Lambda, ProgressBar, Recorder,  # noqa: E402
                          TensorBoard)
from fl.config import Config, ConfigError, load_config  # noqa: E402
from fl.data import FederatedData, as_federated_data  # noqa: E402
from fl.notices import RunWarning  # noqa: E402
from fl.task import Task, TaskError, register_task  # noqa: E402

__all__ = ["Task", "TaskError", "Algorithm", "Aggregator", "register_task", "build_process", "Process", "FederatedData", "as_federated_data",
           "RunWarning", "Config",
           "ConfigError", "load_config", "Callback", "Recorder", "Checkpointer", "ProgressBar", "EarlyStopping",
           "Lambda", "TensorBoard"]
