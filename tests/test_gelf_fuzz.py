"""Property-based GELF campaign against a real `synmlops serve --gelf-port`: generated
frames (TCP null-terminated, UDP plain, zlib, gzip and chunked; random and huge fields, lone
surrogates, NUL, numbers beyond a float, deep nesting, wrong types, garbage) mixed with good
records shaped as synergos_logger sends them. Every good record is stored exactly once and
reads back through the API; every bad one is counted as rejected with its reason; nothing is
lost, no read is a 5xx, and the writer keeps writing afterwards.

The bounded profile (``make test``) tries a few examples; ``HYPOTHESIS_PROFILE=fuzz``
(``make fuzz``) tries many and prints its figures.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import random
import socket
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import Server, free_port, start_server, wait_for
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from synergos_mlops import FederatedTracker, TrackerConfig

API = "/api/synergos/v1"
LONG = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
PROFILE = settings(
    max_examples=300 if LONG else 6,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
IDS = {"_collab_id": "c", "_project_id": "p", "_expt_id": "e", "_run_id": "fuzz"}
MIB = 1024 * 1024
FIGURES: Counter[str] = Counter()
_EXAMPLE = itertools.count()


class Item:
    """One message to send (a plain class: Hypothesis prints a failing example through
    ``__repr__``, which keeps it short)."""

    __slots__ = ("marker", "payload", "reason", "transport")

    def __init__(
        self, transport: str, payload: bytes, marker: str | None, reason: str | None
    ) -> None:
        self.transport = transport  # tcp, udp, zlib, gzip, chunked, raw
        self.payload = payload  # the GELF message (before compression or chunking)
        self.marker = marker  # a good record's marker, in its message
        self.reason = reason  # a bad one's reason

    def __repr__(self) -> str:  # short: a failing example is printed
        head = self.payload[:300] + (b"..." if len(self.payload) > 300 else b"")
        what = self.marker or self.reason
        return f"Item({self.transport}, {what}, {len(self.payload)} bytes: {head!r})"


@pytest.fixture(scope="module")
def fuzz_gelf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    folder = tmp_path_factory.mktemp("gelf-fuzz")
    port = free_port()
    server = start_server(folder / "store", workers=1, extra=["--gelf-port", str(port)])
    with FederatedTracker(server.url, TrackerConfig(spool_dir=folder / "spool")) as tracker:
        tracker.run("c", "p", "e", "fuzz", participants=["w1"]).end()
    yield server, port
    server.stop()


# What is generated ----------------------------------------------------------------------

#: Any code point: lone surrogates and NUL included.
anything = st.lists(st.integers(0, 0x10FFFF).map(chr), max_size=12).map("".join)
numbers = st.one_of(
    st.integers(), st.integers(min_value=10**300, max_value=10**400), st.floats(),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400, -(10**400)]),
)  # fmt: skip
scalars = st.one_of(st.none(), st.booleans(), numbers, anything)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(anything, inner, max_size=3),
    max_leaves=12,
)
wrong_types = st.fixed_dictionaries(
    {},
    optional={
        "timestamp": values, "level": values, "_level_number": values, "host": values,
        "full_message": values, "facility": values, "_logger": values, "_participant": values,
        "_id": values, "version": values,
    },
)  # fmt: skip


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@st.composite
def good_items(draw: st.DrawFn, marker: str) -> Item:
    document: dict[str, Any] = {
        "version": "1.1", "host": "worker", "short_message": f"{marker} " + draw(anything),
        "timestamp": time.time(), "level": 6, "_logger": "WKR_w1", "_level_number": 20,
        "_ID_path": "/worker/main.py", "_ID_function": "main", **IDS,
    }  # fmt: skip
    document.update(draw(wrong_types))
    document.update(IDS)  # the run stays named, so the record can be read back
    document["short_message"] = f"{marker} " + draw(anything)
    fields = draw(st.dictionaries(anything.map(lambda k: f"_{k}"), values, max_size=6))
    fields.pop("_id", None)
    for key in IDS:
        fields.pop(key, None)
    document.update(fields)
    kind = draw(st.sampled_from(["plain", "sysmetric", "huge", "deep"]))
    if kind == "sysmetric":
        document["_logger"] = "SYS_w1"
        for key in ("cpu_percent", "memory_used", "memory_total", "net_bytes_recv"):
            document[f"_{key}"] = draw(numbers)
    elif kind == "huge":
        document["_payload"] = "h" * draw(st.integers(100_000, 900_000))
    elif kind == "deep":
        document["_tree"] = nested(draw(st.integers(1, 63)))
    payload = json.dumps(document).encode()
    transport = draw(st.sampled_from(["tcp", "udp", "zlib", "gzip", "chunked"]))
    if len(payload) > 60_000 and transport in ("udp", "zlib", "gzip"):
        transport = draw(st.sampled_from(["tcp", "chunked"]))
    return Item(transport, payload, marker, None)


@st.composite
def bad_items(draw: st.DrawFn) -> Item:
    kind = draw(st.sampled_from(
        ["garbage", "not_object", "no_message", "oversize", "too_deep", "bad_chunk", "cut"]
    ))  # fmt: skip
    transport = draw(st.sampled_from(["tcp", "udp", "zlib", "gzip", "chunked"]))
    if kind == "garbage":
        data = draw(st.binary(min_size=1, max_size=2000).filter(_garbage))
        return Item("tcp" if transport == "chunked" else transport, data, None, "not_json")
    if kind == "not_object":
        data = json.dumps(draw(st.lists(values, max_size=3) | numbers | anything)).encode()
        return Item(transport, data, None, "not_json")
    if kind == "no_message":
        document = {"version": "1.1", "host": "h", **IDS, "_logger": "TTP_x"}
        if draw(st.booleans()):
            document["short_message"] = draw(values.filter(lambda v: not isinstance(v, str)))
        return Item(transport, json.dumps(document).encode(), None, "missing_field")
    if kind == "oversize":
        data = json.dumps({"short_message": "o" * (MIB + 1000), **IDS}).encode()
        return Item(draw(st.sampled_from(["tcp", "chunked", "zlib", "gzip"])), data, None,
                    "oversize")  # fmt: skip
    if kind == "too_deep":
        document = {"short_message": "deep", **IDS, "_tree": nested(draw(st.integers(65, 400)))}
        return Item(transport, json.dumps(document).encode(), None, "too_deep")
    if kind == "bad_chunk":
        count = draw(st.integers(0, 255))
        sequence = draw(st.integers(count, 255)) if count else draw(st.integers(0, 255))
        head = b"\x1e\x0f" + draw(st.binary(min_size=8, max_size=8))
        return Item("raw", head + bytes([sequence, count]) + b"{}", None, "bad_chunk")
    compressed = zlib.compress(json.dumps({"short_message": "cut", **IDS}).encode())
    cut = compressed[: draw(st.integers(1, len(compressed) - 5))]
    data = cut if cut[:1] == b"\x78" else b"\x78" + cut
    # A cut that loses only the checksum and the last block's final bits still inflates to the
    # whole document, which is then a good record: not this case.
    assume(not _inflates_to_json(data))
    return Item("raw", data, None, "not_json")


def _inflates_to_json(data: bytes) -> bool:
    try:
        json.loads(zlib.decompressobj().decompress(data))
    except (zlib.error, ValueError):
        return False
    return True


def _garbage(data: bytes) -> bool:
    """Bytes that are no GELF object, carry no TCP terminator and are not blank (a blank
    frame is skipped, not counted) nor a chunk (its own case)."""
    if b"\x00" in data or not data.strip() or data[:2] == b"\x1e\x0f":
        return False
    try:
        return not isinstance(json.loads(data.decode("utf-8", "replace")), dict)
    except (ValueError, RecursionError):
        return True


@st.composite
def examples(draw: st.DrawFn) -> list[Item]:
    example = next(_EXAMPLE)
    goods = draw(st.integers(1, 8))
    items = [draw(good_items(f"fz{example:05d}-{n:02d}#")) for n in range(goods)]
    items += draw(st.lists(bad_items(), max_size=6))
    return draw(st.permutations(items))


# How it is sent and judged -------------------------------------------------------------


def _chunks(payload: bytes, size: int) -> list[bytes]:
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    head = b"\x1e\x0f" + os.urandom(8)  # unique: Hypothesis seeds `random` per example
    chunks = [head + bytes([n, len(pieces)]) + piece for n, piece in enumerate(pieces)]
    last = chunks.pop()
    random.shuffle(chunks)
    return [*chunks, last]


def send(port: int, items: list[Item]) -> None:
    frames = b"".join(i.payload + b"\x00" for i in items if i.transport == "tcp")
    if frames:
        with socket.create_connection(("127.0.0.1", port)) as tcp:
            tcp.sendall(frames)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for item in items:
            if item.transport == "tcp":
                continue
            if item.transport == "zlib":
                datagrams = [zlib.compress(item.payload)]
            elif item.transport == "gzip":
                datagrams = [gzip.compress(item.payload)]
            elif item.transport == "chunked":
                size = 60_000 if len(item.payload) > 128 * 8192 else 8192
                datagrams = _chunks(item.payload, size)
            else:
                datagrams = [item.payload]
            for datagram in datagrams:
                udp.sendto(datagram, ("127.0.0.1", port))
                time.sleep(0.0005)  # within the receive buffer: UDP loss is not the question


def gelf_status(server: Server) -> dict[str, Any]:
    response = requests.get(f"{server.url}/health", timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json()["gelf"])


def stored_with(server: Server, prefix: str) -> list[dict[str, Any]]:
    response = requests.get(f"{server.url}{API}/runs/c/p/e/fuzz/logs",
                            params={"q": prefix, "limit": 5000}, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text[:500]
    return list(response.json()["records"])


@given(items=examples())
@PROFILE
def test_good_records_are_stored_once_and_bad_ones_counted_by_reason(
    fuzz_gelf: tuple[Server, int], items: list[Item]
) -> None:
    server, port = fuzz_gelf
    before = gelf_status(server)
    send(port, items)
    goods = [i for i in items if i.reason is None]
    expected = Counter(i.reason for i in items if i.reason is not None)

    def settled() -> bool:
        now = gelf_status(server)
        rejected = sum(now["rejected"].values()) - sum(before["rejected"].values())
        accepted = now["accepted"] - before["accepted"]
        return accepted + rejected >= len(items) and now["stored"] == now["accepted"]

    if not wait_for(settled, timeout=120):
        now = gelf_status(server)
        sent = [(i.transport, i.marker or i.reason, len(i.payload)) for i in items]
        raise AssertionError(
            f"not all accounted for: accepted {now['accepted'] - before['accepted']} of "
            f"{len(goods)} good, stored {now['stored'] - before['stored']}, rejected "
            f"{ {k: v - before['rejected'].get(k, 0) for k, v in now['rejected'].items()} } "
            f"for {dict(expected)}; sent {sent}"
        )
    after = gelf_status(server)
    rejected = Counter({k: v - before["rejected"].get(k, 0) for k, v in after["rejected"].items()})
    assert +rejected == expected
    assert after["accepted"] - before["accepted"] == len(goods)
    assert after["backlog"] == 0 and after["down"] == {}
    prefix = goods[0].marker.split("-")[0]  # type: ignore[union-attr]
    found = Counter(r["message"].split(" ", 1)[0] for r in stored_with(server, prefix))
    assert found == Counter(i.marker for i in goods)  # each exactly once
    FIGURES["inputs"] += len(items)
    FIGURES["stored"] += len(goods)
    FIGURES.update(f"rejected {reason}" for reason in expected.elements())


def test_the_writer_keeps_writing_after_the_campaign(fuzz_gelf: tuple[Server, int]) -> None:
    server, port = fuzz_gelf
    marker = f"after-campaign-{time.time_ns()}"
    with socket.create_connection(("127.0.0.1", port)) as tcp:
        tcp.sendall(json.dumps({"short_message": marker, "_logger": "TTP_x", **IDS}).encode())
    wait_for(lambda: len(stored_with(server, marker)) == 1)

    def settled() -> bool:  # the status file is renewed every half second
        status = gelf_status(server)
        return status["backlog"] == 0 and status["stored"] == status["accepted"]

    assert wait_for(settled)
    assert gelf_status(server)["down"] == {}
    lost = (
        FIGURES["inputs"]
        - FIGURES["stored"]
        - sum(v for k, v in FIGURES.items() if k.startswith("rejected "))
    )
    print(f"\nGELF campaign: {dict(sorted(FIGURES.items()))}, lost {lost}")
    assert lost == 0
