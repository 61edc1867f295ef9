"""One trial: ``run`` (train it and watch it: plain data in, plain data out), ``stability`` (the
per-step watch), ``outcomes`` (the taxonomy table and ``classify``), ``failures`` (why a failed
trial failed, with evidence), ``workers`` and ``isolation`` (worker processes under memory and
time budgets) and ``training`` (a final training that saves a model). Imports ``config``,
``model``, ``data``, ``backends`` and ``infra``; never Optuna or MLflow.
"""
