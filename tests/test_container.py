"""The container image, built with podman from the Dockerfile and run for real.

The image is built once per session by ``.ci/container-image`` (debootstrap base, podman build).
Without podman these tests skip on a developer's machine and fail in CI, where they must run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from builders import erp_row, write_erp_csv
from conftest import ORG_ID, ROOT

from filedrop.sandbox import Sandbox, SandboxOptions

TAG = "filedrop:test-suite"
#: The uid the Dockerfile creates and runs as.
CONTAINER_UID = 10001


def _podman_ready() -> str | None:
    """Why the container tests cannot run here, or None."""
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/container-image installs it)"
    if os.geteuid() != 0:
        return "building the base image needs root (debootstrap, chroot)"
    return None


@pytest.fixture(scope="session")
def image() -> str:
    """The image built from this checkout's Dockerfile."""
    reason = _podman_ready()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"container tests must run in CI: {reason}")
        pytest.skip(reason)
    subprocess.run([str(ROOT / ".ci" / "container-image"), TAG], check=True, cwd=ROOT)
    return TAG


def podman(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def owned_by_container(path: Path) -> Path:
    """Hand a bind-mounted folder or file to the container's user, as README tells operators."""
    os.chown(path, CONTAINER_UID, CONTAINER_UID)
    return path


def test_demo_runs_in_the_container(image: str) -> None:
    """`filedrop demo` works inside the image: the examples ship inside the package."""
    done = podman("run", "--rm", image, "filedrop", "demo")
    assert done.returncode == 0, done.stderr
    assert "SANDBOX run: nothing was sent to Amili." in done.stdout


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"filedrop-test-{os.getpid()}-{time.monotonic_ns()}"
    yield name
    podman("rm", "--force", "--time", "0", name)


def test_watch_in_the_container_takes_a_mounted_inbox_and_stops_cleanly(
    image: str, tmp_path: Path, container_name: str
) -> None:
    """`filedrop watch` as the image runs it: a dropped file gets its outcome, the daemon is not
    root, the image's health check (the daemon's /healthz) passes, and `podman stop` ends it with
    exit 0 well inside the grace period."""
    inbox = tmp_path / "inbox"
    state = tmp_path / "state"
    for folder in (inbox, state):
        folder.mkdir()
        owned_by_container(folder)
    secret = tmp_path / "secret"
    secret.write_text("container-secret\n", encoding="utf-8")
    secret.chmod(0o600)
    owned_by_container(secret)
    with Sandbox(SandboxOptions(delay_s=(0, 0))).start() as sandbox:
        started = podman(
            "run", "--detach", "--name", container_name, "--network", "host",
            "--volume", f"{inbox}:/inbox",
            "--volume", f"{state}:/var/lib/filedrop",
            "--volume", f"{secret}:/run/secrets/amili:ro",
            "--env", "FILEDROP_ENV=sandbox",
            "--env", f"FILEDROP_AUTH_URL={sandbox.url}",
            "--env", f"FILEDROP_API_URL={sandbox.url}",
            "--env", "FILEDROP_CLIENT_ID=container-test",
            "--env", "FILEDROP_CLIENT_SECRET_FILE=/run/secrets/amili",
            "--env", f"FILEDROP_ORG_ID={ORG_ID}",
            "--env", "FILEDROP_STATE=/var/lib/filedrop/journal.db",
            "--env", "FILEDROP_STABILITY_S=0.5",
            "--env", "FILEDROP_RESCAN_S=1",
            image,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        write_erp_csv(inbox / "drop.csv", [erp_row("91001"), erp_row("91002")])
        outcome = inbox / "drop.outcome.csv"
        deadline = time.monotonic() + 60
        while not outcome.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        logs = podman("logs", container_name).stderr
        assert outcome.exists(), logs
        frame = pd.read_csv(outcome, sep=";", encoding="cp1252", dtype=str)
        assert list(frame["outcome_status"]) == ["SUCCEEDED", "SUCCEEDED"]
        assert sandbox.counters().invoices_received == 2

        user = podman("exec", container_name, "id", "-u")
        assert user.stdout.strip() == str(CONTAINER_UID)
        # The image's own HEALTHCHECK, which asks the daemon's /healthz.
        health = podman("healthcheck", "run", container_name)
        assert health.returncode == 0, health.stdout + health.stderr

        # Exit 0, not 137: the daemon ended on SIGTERM itself, before podman's SIGKILL at 20 s.
        stopped = podman("stop", "--time", "20", container_name)
        assert stopped.returncode == 0, stopped.stderr
        exited = podman("inspect", "--format", "{{.State.ExitCode}}", container_name)
        assert exited.stdout.strip() == "0"
        assert "container-secret" not in podman("logs", container_name).stderr
