import os
import sys

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
# Ray workers start from the driver's environment: let them import tiny_tasks too
os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
