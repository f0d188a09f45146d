import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `import report` is the package at the root, not this tests folder
    sys.path.insert(0, str(ROOT))

from report_study import study_dir  # noqa: E402,F401  (the fixture)
