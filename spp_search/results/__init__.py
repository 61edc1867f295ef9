"""Reading a study back: ``report`` (with ``claims``, ``stats`` and ``plots``), ``export`` (the best
configuration), ``retrain`` and ``registry`` (the best model, trained and logged to MLflow) and
``dashboard``. Imports ``study`` and the rooms below it.
"""
