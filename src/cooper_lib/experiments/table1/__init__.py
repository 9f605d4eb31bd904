"""A miniature of COOPER's Table 1 on the synthetic world: six arms trained on the same data and
budget, scored per question category beside chance and the best fixed answer, with probes of
whether the perceiving arms use their maps. See docs/experiment-table1.md.

The names are resolved on first use (`cooper_lib.lazy`), so the command line reads `Table1Config`
for its flags without importing the trainers."""

from typing import TYPE_CHECKING

from cooper_lib.lazy import lazy_exports

if TYPE_CHECKING:
    from cooper_lib.experiments.table1.arms import ARMS, Arm
    from cooper_lib.experiments.table1.config import Table1Config
    from cooper_lib.experiments.table1.report import mean_interval
    from cooper_lib.experiments.table1.runner import run_table1

__all__ = ["ARMS", "Arm", "Table1Config", "mean_interval", "run_table1"]

_EXPORTS = {
    "ARMS": "cooper_lib.experiments.table1.arms",
    "Arm": "cooper_lib.experiments.table1.arms",
    "Table1Config": "cooper_lib.experiments.table1.config",
    "mean_interval": "cooper_lib.experiments.table1.report",
    "run_table1": "cooper_lib.experiments.table1.runner",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
