"""A study: many trials chosen by an engine, recorded in Optuna and MLflow, resumable to a total.

``driver`` (what ``run``/``worker`` do), ``loop`` (the Optuna engine's trial loop),
``keras_tuner`` (the KerasTuner engine), ``lifecycle`` (open and close a study), ``recording``
(an outcome into Optuna's terms), ``budget`` (tickets: the total across drivers), ``liveness``
(heartbeats, leases, dead drivers), ``seeding``, ``tracking`` (MLflow runs) and ``progress`` (the
console). Imports ``trial`` and the rooms below it.
"""
