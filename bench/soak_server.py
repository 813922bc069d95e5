"""The server under test: `deltaserve serve` from this checkout as a subprocess on a loopback port, with its
own adapter store and the limits the soak exercises, plus its memory and its log."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The settings the soak runs the server with (each a DELTASERVE_* variable); the refusals it expects
    follow from them."""

    max_concurrent_requests: int = 16
    max_request_bytes: int = 64 * 1024
    max_input_chars: int = 4096
    max_upload_bytes: int = 64 * MiB
    max_new_tokens_limit: int = 256
    request_timeout_s: float = 60.0
    shutdown_grace_s: float = 10.0

    def environment(self) -> dict[str, str]:
        return {f"DELTASERVE_{name.upper()}": str(value) for name, value in self.__dict__.items()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_environment(limits: Limits, store: Path, base_model: str | None, device: str) -> dict[str, str]:
    """The parent's environment without any DELTASERVE_* setting (keys would change what is refused), plus
    the soak's own. The demo adapters are made for the default model only."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DELTASERVE_")}
    env.update(limits.environment())
    env.update({"DELTASERVE_ADAPTERS_DIR": str(store), "DELTASERVE_DEVICE": device,
                "DELTASERVE_LOAD_DEMO_ADAPTERS": "true" if base_model is None else "false"})
    if base_model is not None:
        env["DELTASERVE_BASE_MODEL"] = base_model
    return env


def start_server(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    """`python -m deltaserve serve` run from this checkout, so its own code is what is measured."""
    command = [sys.executable, "-m", "deltaserve", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, process: subprocess.Popen, log_path: Path, timeout_s: float) -> dict:
    """/ready's answer once the model is loaded; raises with the log's tail if the server dies or is slow."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log_tail(log_path)}")
        try:
            response = httpx.get(f"{url}/ready", timeout=2)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the server was not ready within {timeout_s:.0f} s:\n{log_tail(log_path)}")


def stop_server(process: subprocess.Popen, grace_s: float) -> tuple[int | None, float]:
    """SIGTERM, then wait out the server's drain; returns (exit status or None if it had to be killed,
    seconds it took)."""
    started = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
        return process.returncode, time.monotonic() - started
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None, time.monotonic() - started


def rss_mib(pid: int) -> float | None:
    """Resident memory of the process from /proc (Linux); None where that is not readable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def log_tail(log_path: Path, chars: int = 4000) -> str:
    return log_path.read_text(errors="replace")[-chars:] if log_path.exists() else ""


def log_errors(log_path: Path, limit: int = 20) -> list[str]:
    """The server log's ERROR lines and the last line of each traceback: what a 500 or a crash left."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    found: list[str] = []
    in_traceback = False
    for index, line in enumerate(lines):
        if len(found) >= limit:
            found.append(f"... ({len(lines) - index} more log lines)")
            break
        if line.startswith("ERROR"):
            found.append(line)
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line and not line.startswith(" "):
            in_traceback = False
            found.append(line)  # the exception itself
    return found
