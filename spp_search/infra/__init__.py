"""What every room leans on: ``errors`` (the exceptions and their one-line template), ``checks``
(numeric ranges), ``redaction`` (secrets out of logs), ``environment`` (URLs from the
environment), ``process`` (quiet libraries, SIGTERM), ``storage`` (Optuna storages by URL scheme),
``retry`` and ``locks``, and ``optuna_private`` (the only place that touches Optuna's private
API). Imports nothing else of spp-search.
"""
