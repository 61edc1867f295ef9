"""The options of the study settings and commands, in one light module: the config validates
against these tables and the command line offers them as ``choices`` (without loading the rest
of the config package)."""

from __future__ import annotations

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
ISOLATIONS = ("process", "inline")
ENGINES = ("optuna", "keras-tuner")
TUNERS = ("random", "bayesian", "hyperband")
DEVICES = ("auto", "cpu", "gpu")
SELECTIONS = ("accuracy", "stability")  # how export-best and train pick a study's best trial
