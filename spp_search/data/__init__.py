"""What trials train on: images of any size and band count, generated or read from folders.

``images`` (``ImageSet``, reading and writing folders, the split), ``synthetic`` and ``digits``
(the built-in tasks), ``loading`` (a trial's data, the built-in sources), ``corruption`` (the
injected data problems), ``channels`` (band and order policies), ``preprocessing`` (size
policies, batches), ``datacheck`` (a folder looked at before a study) and ``datasets`` (the data as
MLflow datasets). Imports only from ``infra``; NumPy, no backend.
"""
