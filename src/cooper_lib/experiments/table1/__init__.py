"""A miniature of COOPER's Table 1 on the synthetic world: six arms trained on the same data and
budget, scored per question category beside chance and the best fixed answer, with probes of
whether the perceiving arms use their maps. See docs/experiment-table1.md."""

from cooper_lib.experiments.table1.arms import ARMS, Arm
from cooper_lib.experiments.table1.config import Table1Config
from cooper_lib.experiments.table1.report import mean_interval
from cooper_lib.experiments.table1.runner import run_table1

__all__ = ["ARMS", "Arm", "Table1Config", "mean_interval", "run_table1"]
