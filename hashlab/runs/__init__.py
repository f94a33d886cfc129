"""The run layer: one run's life cycle (fit.py), tables of runs (tables.py) and sweeps (sweeps.py).

Below the command line and above records/: nothing here imports hashlab.cli.
"""
