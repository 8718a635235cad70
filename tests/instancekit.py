"""Shared helpers of the multi-instance tests (no tests here): several ``libhub run``
processes on one PostgreSQL database, their /healthz reports and which one leads."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from network.devtools.devserver import free_port

REPO = Path(__file__).resolve().parents[1]


def on_postgres(config: str, url: str) -> str:
    """`tests.test_delivery_kit.config_text` moved from its SQLite file to ``url``."""
    lines = [
        f'url = "{url}"' if line.startswith("path = ") else line for line in config.split("\n")
    ]
    return "\n".join(lines)


def with_port(config: str) -> str:
    """The same configuration listening on a port of its own (one per instance)."""
    lines = [
        f'listen = "127.0.0.1:{free_port()}"' if line.startswith("listen = ") else line
        for line in config.split("\n")
    ]
    return "\n".join(lines)


@dataclass
class Instance:
    """One ``libhub run`` subprocess, its configuration and its log."""

    name: str
    config: Path
    env: dict[str, str]
    proc: asyncio.subprocess.Process | None = None

    @property
    def log(self) -> Path:
        return self.config.with_suffix(".log")

    @property
    def health(self) -> str:
        for line in self.config.read_text().split("\n"):
            if line.startswith("listen = "):
                listen = line.split('"')[1]
                return f"http://{listen}/healthz"
        raise AssertionError("no web.listen in the configuration")

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "network.cli", "run", "-c", str(self.config),
                cwd=REPO, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def kill(self) -> None:
        """SIGKILL: no resign, no clean-up; its leases run out or are taken back."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    async def report(self, http: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with http.get(self.health) as resp:
                answer: dict[str, Any] = await resp.json()
                return answer
        except (aiohttp.ClientError, ValueError):
            return None


def make_instances(
    tmp: Path, name: str, config: str, count: int, env: dict[str, str]
) -> list[Instance]:
    out = []
    for i in range(count):
        path = tmp / f"{name}{i}.toml"
        path.write_text(with_port(config))
        out.append(Instance(f"{name}{i}", path, {**os.environ, **env}))
    return out


async def leader_pid(http: aiohttp.ClientSession, instances: list[Instance]) -> int | None:
    """The pid of the instance that leads, as any live instance's /healthz reports it."""
    for inst in instances:
        if inst.proc is None or inst.proc.returncode is not None:
            continue
        report = await inst.report(http)
        if report is None:
            continue
        for entry in report.get("instances", []):
            if entry["leader"]:
                return int(entry["pid"])
    return None


def logs(instances: list[Instance]) -> str:
    return "\n".join(f"--- {i.name}\n{i.log.read_text()[-3000:]}" for i in instances)
