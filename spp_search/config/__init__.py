"""The experiment: one frozen, validated config from a YAML file and the command line.

``settings`` (the config's sections and loading), ``factors`` (every knob of a trial, with its
default, and ``resolved``), ``space`` (the searched factors, for Optuna and KerasTuner),
``ablation`` (fixed arms x seeds), ``fingerprint`` (what defines a study, for resuming) and
``choices`` (the option tables). Imports from ``model``, ``data`` and ``infra``; never a backend.
"""
