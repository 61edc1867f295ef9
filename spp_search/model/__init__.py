"""The trained network: ``bins`` (the SPP bin rule, NumPy), ``layers`` (our exact SPP layer),
``variants`` (other people's SPP), ``impls`` (the table of SPP implementations a study compares)
and ``network`` (backbone, head, optimizer with gradient norm). Imports ``backends`` and ``infra``.
"""
