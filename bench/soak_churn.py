"""Uploads, replacements and deletes of adapters while requests for them run, and uploads the store must
refuse; each checks the store answers as it should."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx

from bench.soak_adapters import AdapterFiles, SoakAdapters
from bench.soak_client import NAMED_PIPELINE, PROMPTS, Soak
from bench.soak_ledger import Expect, Outcome
from bench.soak_validators import one_generation, record_version


async def upload(
    soak: Soak,
    action: str,
    name: str,
    files: AdapterFiles,
    expect: Expect,
    *,
    archive: bool = False,
    description: str = "soak",
) -> httpx.Response | None:
    if archive:
        return await soak.send(
            action, "PUT", f"/adapters/{name}", expect, content=files.tar_gz(), params={"description": description}
        )
    return await soak.send(
        action, "PUT", f"/adapters/{name}", expect, files=files.multipart(), data={"description": description}
    )


class Churn:
    """Writes to the store, one at a time, while the traffic runs; each checks the store answers as it should."""

    def __init__(self, soak: Soak, adapters: SoakAdapters, rng: random.Random):
        self.soak, self.adapters, self.rng = soak, adapters, rng
        self.replacements = 0
        self.temporaries = 0

    async def run(self) -> None:
        cycle = [
            self.replace,
            self.temporary,
            self.replace,
            self.refused_upload,
            self.replace,
            self.pickle,
            self.refused_replacement,
            self.temporary,
            self.replace_pipeline,
            self.unsafe_archive,
            self.declared_too_large,
            self.refused_upload,
        ]
        step = 0
        while self.soak.running():
            await cycle[step % len(cycle)]()
            step += 1
            await asyncio.sleep(self.rng.uniform(0.1, 0.8))

    async def replace(self) -> None:
        """A new version of a swapped adapter (multipart or archive in turn) while requests for it run."""
        name = self.rng.choice(self.soak.catalogue.swapped)
        files = self.adapters.variants[name.removeprefix("soak-")][self.replacements % 2]
        version = self.soak.catalogue.versions[name] + 1
        expect = Expect.of(200, validate=record_version(name, version))
        if (
            await upload(self.soak, "churn.replace", name, files, expect, archive=self.replacements % 2 == 1)
            is not None
        ):
            self.soak.catalogue.versions[name] = version
        self.replacements += 1

    async def temporary(self) -> None:
        """Create an adapter, send requests for it, delete it while they may still run (they finish on the
        version they hold, or get 404 if they came too late)."""
        name = f"soak-temp-{self.temporaries}"
        self.temporaries += 1
        created = await upload(
            self.soak,
            "churn.create",
            name,
            self.adapters.served["lora-r16-1"],
            Expect.of(201, validate=record_version(name, 1)),
        )
        if created is None:
            return
        self.soak.catalogue.temporary.append(name)
        requests = [asyncio.ensure_future(churned_adapter_now(self.soak, self.rng, name)) for _ in range(3)]
        await asyncio.sleep(self.rng.uniform(0.0, 0.3))
        await self.soak.send("churn.delete", "DELETE", f"/adapters/{name}", Expect.of(204))
        await asyncio.gather(*requests)
        await self.soak.send("churn.deleted_is_gone", "GET", f"/adapters/{name}", Expect.of(404))

    async def refused_upload(self) -> None:
        """Broken weights (NaN, overflowing, truncated) under a new name: refused, and the store unchanged."""
        kind = self.rng.choice(sorted(self.adapters.broken))
        name = f"soak-broken-{kind}"
        statuses = (400, 422) if kind == "truncated" else (422,)
        await upload(self.soak, f"churn.refused_{kind}", name, self.adapters.broken[kind], Expect.of(*statuses))
        await self.soak.send("churn.refused_is_absent", "GET", f"/adapters/{name}", Expect.of(404))

    async def refused_replacement(self) -> None:
        """NaN weights as a replacement: refused, and the version served stays the one before."""
        name = self.rng.choice(self.soak.catalogue.swapped)
        await upload(self.soak, "churn.refused_replacement", name, self.adapters.broken["nan"], Expect.of(422))
        expect = Expect.of(200, validate=record_version(name, self.soak.catalogue.versions[name]))
        await self.soak.send("churn.version_kept", "GET", f"/adapters/{name}", expect)

    async def pickle(self) -> None:
        files = self.adapters.served["lora-r8-0"].multipart(weights_name="adapter_model.bin")
        await self.soak.send("churn.pickle", "PUT", "/adapters/soak-pickle", Expect.of(415), files=files)

    async def unsafe_archive(self) -> None:
        body = self.adapters.served["lora-r8-0"].tar_gz(prefix="../")
        await self.soak.send("churn.unsafe_archive", "PUT", "/adapters/soak-unsafe", Expect.of(400), content=body)

    async def replace_pipeline(self) -> None:
        """The named pipeline redefined (the same steps) while runs of it are in flight."""
        steps = named_pipeline_steps(self.soak.catalogue.stable)
        await self.soak.send(
            "churn.replace_pipeline",
            "PUT",
            f"/pipelines/{NAMED_PIPELINE}",
            Expect.of(200),
            json={"description": "soak", "steps": steps},
        )

    async def declared_too_large(self) -> None:
        """An upload whose Content-Length is over the limit: refused before a byte of it is read."""
        await declared_too_large(self.soak, self.soak.limits.max_upload_bytes + 1024 * 1024)


async def churned_adapter_now(soak: Soak, rng: random.Random, name: str) -> None:
    expect = Expect.of(200, 404, sheddable=True, validate=one_generation(name, 8))
    await soak.send(
        "generate.churned",
        "POST",
        "/generate",
        expect,
        json={"adapter": name, "text": rng.choice(PROMPTS), "max_new_tokens": 8},
    )


def named_pipeline_steps(stable: list[str]) -> list[dict[str, Any]]:
    lora, prefix = next(n for n in stable if "lora" in n), next(n for n in stable if "prefix" in n)
    return [
        {"name": "first", "adapter": lora, "max_new_tokens": 6},
        {"name": "second", "adapter": prefix, "input": "{text}", "max_new_tokens": 6},
        {"name": "joined", "adapter": None, "input": "{first} and {second}", "max_new_tokens": 6},
    ]


async def declared_too_large(soak: Soak, declared: int) -> None:
    """Raw HTTP: httpx will not send a Content-Length its body does not have. The server must answer 413
    from the headers alone."""
    host, port = soak.client.base_url.host, soak.client.base_url.port
    at_s, started = soak.ledger.now(), time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"PUT /adapters/soak-too-large HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/gzip\r\n"
            f"Content-Length: {declared}\r\n\r\n".encode()
        )
        await writer.drain()
        reply = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    except (OSError, asyncio.TimeoutError) as exc:
        soak.ledger.record(
            Outcome(
                "churn.upload_declared_too_large",
                None,
                None,
                time.perf_counter() - started,
                at_s=at_s,
                violation=f"transport error: {type(exc).__name__}: {exc!r}",
            )
        )
        return
    status_line = reply.split(b"\r\n", 1)[0].decode(errors="replace")
    status = int(status_line.split()[1]) if len(status_line.split()) > 1 and status_line.split()[1].isdigit() else None
    ok = status == 413 and b"payload_too_large" in reply
    soak.ledger.record(
        Outcome(
            "churn.upload_declared_too_large",
            status,
            "payload_too_large" if ok else None,
            time.perf_counter() - started,
            at_s=at_s,
            violation=None if ok else f"answer {reply[:300]!r}",
        )
    )
