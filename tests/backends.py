"""Run test code on every Keras backend installed, from one pytest process.

Keras picks its backend once per process, at import; the pytest process runs on TensorFlow (or
whatever ``KERAS_BACKEND`` says). ``on(backend, fn, *args)`` calls ``fn`` here when ``backend`` is
this process's, else in a spawned process started with ``KERAS_BACKEND=backend`` (one per
backend, kept for the session). ``fn`` must be a module-level function and return picklable
values (NumPy arrays, numbers); the test asserts on them here.
"""

from __future__ import annotations

import functools
import importlib.util
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

BACKENDS = [b for b in ("tensorflow", "jax") if importlib.util.find_spec(b) is not None]


def here() -> str:
    import keras

    return keras.backend.backend()


@functools.cache
def _pool(backend: str) -> ProcessPoolExecutor:
    env = {"KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": "-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
        pool.submit(os.getpid).result()  # start the process now, with this environment
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return pool


def on(backend: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` run with Keras on ``backend``."""
    if backend == here():
        return fn(*args, **kwargs)
    return _pool(backend).submit(fn, *args, **kwargs).result()
