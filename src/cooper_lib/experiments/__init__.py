"""Controlled experiments built from the library's trainers and evaluation.

`cooper_lib.experiments.table1` is a miniature of COOPER's Table 1 on the synthetic world
(``cooper-lib experiment table1``; docs/experiment-table1.md). Import it from there: this package
imports nothing itself, so the CLI stays quick to start.
"""
