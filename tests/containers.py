"""Podman for the container tests: the stand-in base image, the CPU image built on it, runs in it.

No Docker Hub and no Docker daemon here: the team's ``container-base.sh`` (``../shared/tools``)
makes ``python:3.11-slim`` from Debian bookworm packages and prints the podman flags this machine
needs (runc, cgroupfs, the host's pip index mounted into builds). The base and those flags are
kept in ``STATE`` between runs; the image's dependency layer is cached by podman itself, so a
rebuild after a code change takes seconds.

What the environment cannot provide (podman, root, the base script, Debian's mirror) skips the
tests with the reason; what the project gets wrong (the image does not build, a command fails in
it) fails them.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE = "docker.io/library/python:3.11-slim"
IMAGE = "localhost/spp-search:cpu-test"
STATE = Path(os.environ.get("SPP_CONTAINER_STATE", "/tmp/container-base"))
UID = 10001  # the images' user (docker/Dockerfile.cpu)


def base_script() -> Path | None:
    """``container-base.sh``: $SPP_CONTAINER_BASE_SCRIPT, else the shared tools beside the checkout."""
    given = os.environ.get("SPP_CONTAINER_BASE_SCRIPT")
    candidates = [Path(given)] if given else []
    candidates += [ROOT.parent / "shared/tools/container-base.sh", Path("/work/shared/tools/container-base.sh")]
    return next((p for p in candidates if p.is_file()), None)


def unavailable() -> str | None:
    """Why containers cannot run here, or None."""
    missing = [c for c in ("podman", "runc") if shutil.which(c) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install podman runc)"
    if os.geteuid() != 0:
        return "rootful podman needs root (the base is built with debootstrap)"
    return None


def _environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **(extra or {}), "CONTAINERS_CONF": str(STATE / "containers.conf")}


def podman(
    *args: str, timeout: float = 600, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``podman ARGS``; ``env`` is podman's own environment (``-e NAME`` passes a value on)."""
    argv = ["podman", "--runtime", "runc", *args]
    done = subprocess.run(argv, capture_output=True, text=True, env=_environ(env), timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} ... exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def _base_ready() -> bool:
    flags = STATE / "build-flags"
    return flags.is_file() and podman("image", "exists", BASE, check=False).returncode == 0


def build_flags() -> tuple[list[str], float | None]:
    """The flags ``podman build`` needs here, and the seconds it took to make the stand-in base
    when it was missing (None when it was kept from an earlier run)."""
    made = None
    if not _base_ready():
        script = base_script()
        if script is None:
            pytest.skip(f"no {BASE} and no container-base.sh to make it (set SPP_CONTAINER_BASE_SCRIPT)")
        if shutil.which("debootstrap") is None:
            pytest.skip("debootstrap not installed (apt-get install debootstrap): the base cannot be made")
        start = time.monotonic()
        done = subprocess.run(
            ["bash", str(script), "--state", str(STATE)], capture_output=True, text=True, timeout=1200
        )
        made = round(time.monotonic() - start, 1)
        if done.returncode != 0:  # the machine's mirrors, not the project
            pytest.skip(f"container-base.sh failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
        printed = re.search(r"podman --runtime runc build (.*) -t IMAGE", done.stdout)
        assert printed, f"container-base.sh printed no build flags:\n{done.stdout[-2000:]}"
        (STATE / "build-flags").write_text(printed.group(1))
    return shlex.split((STATE / "build-flags").read_text()), made


def base_digest() -> str:
    return podman("image", "inspect", "--format", "{{.Digest}}", BASE).stdout.strip()


def build_image(dockerfile: str = "docker/Dockerfile.cpu") -> dict:
    """Build ``IMAGE`` from the checkout; its build seconds, size and base."""
    flags, base_s = build_flags()
    digest = base_digest()
    start = time.monotonic()
    podman(
        "build", *flags, "--build-arg", f"BASE_DIGEST={digest}", "-t", IMAGE, "-f", dockerfile, str(ROOT), timeout=2400
    )
    seconds = time.monotonic() - start
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    figures = {"build_s": round(seconds, 1), "image_bytes": size, "base": f"{BASE}@{digest}"}
    if base_s is not None:
        figures["base_build_s"] = base_s
    version = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    figures["machine"] = f"{os.cpu_count()} cores, podman {version} (runc), {platform.platform()}"
    return figures


def run_args(
    *args: str,
    mounts: dict[Path, str] | None = None,
    env: dict[str, str] | None = None,
    network: str = "none",
    entrypoint: str | None = None,
    name: str | None = None,
) -> list[str]:
    """The ``podman run`` arguments: the host's ulimits (podman's defaults fail here), mounts, env."""
    argv = ["run", "--rm", "--ulimit", "host", "--network", network]
    if network == "host":
        argv += ["--add-host", "mlflow:127.0.0.1"]  # compose's service name, on the host network
    for host, inside in (mounts or {}).items():
        argv += ["-v", f"{host}:{inside}"]
    for key in env or {}:
        argv += ["-e", key]  # the value from our environment: never on a command line
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    if name:  # its own hostname too: a driver's id is hostname:pid, and every container's pid is 1
        argv += ["--name", name, "--hostname", name]
    return [*argv, IMAGE, *args]


def run(*args: str, timeout: float = 600, env: dict[str, str] | None = None, **options) -> subprocess.CompletedProcess:
    """Run the image to its end; ``env`` travels in podman's environment, not its argv."""
    return podman(*run_args(*args, env=env, **options), timeout=timeout, check=False, env=env)


def start(*args: str, log: Path, env: dict[str, str] | None = None, **options) -> subprocess.Popen:
    """Start the image in the background (a server, a worker); output to ``log``."""
    argv = ["podman", "--runtime", "runc", *run_args(*args, env=env, **options)]
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=_environ(env))


def owned_folder(path: Path, uid: int = UID) -> Path:
    """A host folder the container's user can write (what docs/scale-out.md tells users to do)."""
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, uid)
    return path
