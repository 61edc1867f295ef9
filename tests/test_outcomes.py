"""``classify`` as a table: one row per outcome, plus precedence and status mapping."""

from __future__ import annotations

import pytest

from spp_search.trial.outcomes import EXPLOSION_FACTOR, Evidence, Outcome, classify, exploded

TF = "tensorflow.python.framework.errors_impl."
ROWS = [
    ("ok", Evidence(), Outcome.OK),
    ("pruned", Evidence(pruned=True), Outcome.PRUNED),
    ("nan loss", Evidence(nonfinite_step=7, initial_loss=1.4), Outcome.DIVERGED_NAN),
    ("explosion", Evidence(initial_loss=1.0, max_loss=EXPLOSION_FACTOR + 1), Outcome.DIVERGED_EXPLOSION),
    ("loss at the limit", Evidence(initial_loss=1.0, max_loss=EXPLOSION_FACTOR), Outcome.OK),
    (
        "gpu oom",
        Evidence(error_type=TF + "ResourceExhaustedError", error_message="OOM when allocating", device="gpu"),
        Outcome.OOM_GPU,
    ),
    ("cpu oom", Evidence(error_type=TF + "ResourceExhaustedError", device="cpu"), Outcome.OOM_HOST),
    ("memory error", Evidence(error_type="builtins.MemoryError"), Outcome.OOM_HOST),
    ("over host budget", Evidence(over_host_budget=True, exit_code=-9, got_result=False), Outcome.OOM_HOST),
    (
        "shape",
        Evidence(
            error_type=TF + "InvalidArgumentError",
            error_message="Input to reshape is a tensor with 12 values",
        ),
        Outcome.SHAPE_ERROR,
    ),
    (
        "keras shape",
        Evidence(
            error_type="builtins.ValueError",
            error_message="Input spatial dimensions must be statically known",
        ),
        Outcome.SHAPE_ERROR,
    ),
    ("our shape error", Evidence(error_type="spp_search.errors.ShapeError"), Outcome.SHAPE_ERROR),
    ("data", Evidence(error_type="spp_search.errors.DataError", error_message="x.png"), Outcome.DATA_ERROR),
    ("pil", Evidence(error_type="PIL.UnidentifiedImageError"), Outcome.DATA_ERROR),
    ("timeout", Evidence(timed_out=True, got_result=False), Outcome.TIMEOUT),
    ("sigsegv", Evidence(exit_code=-11, got_result=False), Outcome.CRASH),
    ("sigfpe", Evidence(exit_code=-8, got_result=False), Outcome.CRASH),
    ("exit 1", Evidence(exit_code=1, got_result=False), Outcome.CRASH),
    ("unknown exception", Evidence(error_type="builtins.RuntimeError", error_message="boom"), Outcome.CRASH),
    (
        "check_numerics",
        Evidence(error_type=TF + "InvalidArgumentError", error_message="check_numerics: Tensor had NaN values"),
        Outcome.DIVERGED_NAN,
    ),
    ("config", Evidence(error_type="spp_search.errors.ConfigError"), Outcome.CONFIG_ERROR),
    # the host, not the configuration (issue 22: a full disk made trials `crash`, using up retries)
    (
        "disk full",
        Evidence(error_type="builtins.OSError", error_message="[Errno 28] No space left on device"),
        Outcome.HOST_ERROR,
    ),
    (
        "sqlite full",
        Evidence(error_type="sqlite3.OperationalError", error_message="database or disk is full"),
        Outcome.HOST_ERROR,
    ),
    (
        "read-only",
        Evidence(error_type="builtins.OSError", error_message="[Errno 30] Read-only file system: 'x'"),
        Outcome.HOST_ERROR,
    ),
]

# Out-of-memory messages as each backend and CUDA library writes them (quoted from public reports).
XLA = "jaxlib.xla_extension.XlaRuntimeError"
OOM_MESSAGES = [
    ("tf bfc", TF + "ResourceExhaustedError", "OOM when allocating tensor with shape[64,32,128,128] and type float"),
    ("jax execute", XLA, "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 7406166528 bytes."),
    (
        "jax new name",
        "jax.errors.JaxRuntimeError",
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 6291456 bytes.",
    ),
    (
        "jax old runtime",
        "builtins.RuntimeError",
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 14285187448 bytes.",
    ),
    (
        "xla request",
        XLA,
        "Resource exhausted: Failed to allocate request for 528.00MiB (553648128B) on device ordinal 0",
    ),
    (
        "cuda driver",
        XLA,
        "failed to allocate 528.00M (553648128 bytes) from device: CUDA_ERROR_OUT_OF_MEMORY: out of memory",
    ),
    ("cudnn handle", "builtins.RuntimeError", "Could not create cudnn handle: CUDNN_STATUS_ALLOC_FAILED"),
    ("cuda runtime", XLA, "INTERNAL: cudaErrorMemoryAllocation : out of memory"),
]
NOT_OOM = [
    ("cudnn execution", XLA, "UNKNOWN: CUDNN_STATUS_EXECUTION_FAILED"),
    ("xla internal", XLA, "INTERNAL: Failed to launch CUDA kernel: invalid argument"),
]


def test_a_shape_word_in_an_error_of_our_own_code_is_a_crash_not_a_finding():
    """A ValueError/TypeError mentioning "shape" used to become an infeasible shape_error wherever
    it came from, hiding bugs of spp-search's own code as findings about SPP."""
    bug = Evidence(error_type="builtins.TypeError", error_message="bad operand for shape", raised_in="spp_search")
    assert classify(bug) is Outcome.CRASH
    keras = Evidence(
        error_type="builtins.ValueError", error_message="Input 0 is incompatible: shape", raised_in="keras"
    )
    assert classify(keras) is Outcome.SHAPE_ERROR
    ours = Evidence(error_type="spp_search.errors.ShapeError", error_message="stride 0", raised_in="spp_search")
    assert classify(ours) is Outcome.SHAPE_ERROR


def test_a_kernel_out_of_memory_kill_is_oom_host_not_a_crash():
    """SIGKILLed by the kernel's OOM killer (the cgroup counted a kill) with no host budget set."""
    assert classify(Evidence(exit_code=-9, got_result=False, oom_killed=True)) is Outcome.OOM_HOST
    assert classify(Evidence(exit_code=-9, got_result=False)) is Outcome.CRASH


@pytest.mark.parametrize(("error_type", "message"), [r[1:] for r in OOM_MESSAGES], ids=[r[0] for r in OOM_MESSAGES])
def test_out_of_memory_messages_of_every_backend(error_type, message):
    assert classify(Evidence(error_type=error_type, error_message=message, device="gpu")) is Outcome.OOM_GPU
    assert classify(Evidence(error_type=error_type, error_message=message, device="cpu")) is Outcome.OOM_HOST


@pytest.mark.parametrize(("error_type", "message"), [r[1:] for r in NOT_OOM], ids=[r[0] for r in NOT_OOM])
def test_other_runtime_errors_are_crashes(error_type, message):
    assert classify(Evidence(error_type=error_type, error_message=message, device="gpu")) is Outcome.CRASH


@pytest.mark.parametrize(("evidence", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_classify_table(evidence, expected):
    assert classify(evidence) is expected


def test_every_outcome_has_a_row():
    assert {r[2] for r in ROWS} == set(Outcome)


def test_precedence_timeout_beats_everything():
    assert classify(Evidence(timed_out=True, over_host_budget=True, error_type="x.DataError")) is Outcome.TIMEOUT
    assert classify(Evidence(over_host_budget=True, error_type="x.DataError")) is Outcome.OOM_HOST


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (Outcome.OK, "FINISHED"),
        (Outcome.PRUNED, "KILLED"),
        (Outcome.DIVERGED_NAN, "FAILED"),
        (Outcome.CRASH, "FAILED"),
        (Outcome.OOM_HOST, "FAILED"),
    ],
)
def test_mlflow_status(outcome, status):
    assert outcome.mlflow_status == status


def test_outcome_families():
    assert {o for o in Outcome if o.kind.record == "infeasible"} == {
        Outcome.OOM_GPU,
        Outcome.OOM_HOST,
        Outcome.SHAPE_ERROR,
        Outcome.DATA_ERROR,
    }
    assert {o for o in Outcome if o.kind.retry} == {Outcome.CRASH, Outcome.TIMEOUT}
    assert {o for o in Outcome if o.diverged} == {Outcome.DIVERGED_NAN, Outcome.DIVERGED_EXPLOSION}
    assert {o for o in Outcome if o.kind.fatal} == {Outcome.CONFIG_ERROR}
    assert {o for o in Outcome if o.kind.replace_worker} == {
        Outcome.CRASH,
        Outcome.TIMEOUT,
        Outcome.OOM_HOST,
        Outcome.OOM_GPU,
    }
    assert not Outcome.OK.failed and not Outcome.PRUNED.failed and Outcome.DIVERGED_NAN.failed


def test_exploded_ignores_missing_and_nonfinite():
    assert not exploded(None, 100.0)
    assert not exploded(1.0, float("inf"))
    assert exploded(0.5, 5.01)
