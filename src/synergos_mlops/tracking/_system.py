"""Hardware statistics of a participant, sampled beside its training (see docs/system.md).

:class:`Sampler` reads, with psutil, the machine's and one process's CPU, memory, disk and
network figures (and, when ``nvidia-ml-py`` is importable and finds GPUs, each GPU's), under
MLflow's own ``system/...`` key names where MLflow has one and ``system/process_...`` names
of ours for the process. :class:`SystemMonitor` samples every ``interval`` seconds in a
daemon thread and sends the samples, named by collaboration and participant, through the
tracker's sender and an on-disk spool of their own; the destination attaches each sample to
the participant's runs by time (``storage.system``).
"""

from __future__ import annotations

import os
import platform
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.storage.batch import MetricBatch
from synergos_mlops.storage.samples import encode_samples, target
from synergos_mlops.tracking._config import TrackerConfig
from synergos_mlops.tracking._sender import MetricsKind, Sender
from synergos_mlops.tracking._spool import Spool
from synergos_mlops.tracking._transport import Transport, transport_for

__all__ = ["MACHINE_KEYS", "PROCESS_KEYS", "MonitorSummary", "Sampler", "SystemMonitor"]

_MB = 1e6  # MLflow's system metrics use 10^6 bytes
#: Machine-wide keys: MLflow's own names (mlflow/system_metrics/), then ours.
MACHINE_KEYS = (
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/disk_usage_percentage",
    "system/disk_usage_megabytes",
    "system/disk_available_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
    # ours: the original Synergos logger's disk counters and packet counts
    "system/disk_read_megabytes",
    "system/disk_write_megabytes",
    "system/network_receive_packets",
    "system/network_transmit_packets",
)
#: Keys of the monitored (training) process; ours, MLflow has none.
PROCESS_KEYS = (
    "system/process_cpu_utilization_percentage",
    "system/process_memory_rss_megabytes",
    "system/process_memory_usage_percentage",
    "system/process_disk_read_megabytes",
    "system/process_disk_write_megabytes",
    "system/process_threads",
)
#: Per GPU ``i`` (MLflow's names): ``system/gpu_{i}_<name>``.
GPU_KEYS = (
    "utilization_percentage",
    "memory_usage_percentage",
    "memory_usage_megabytes",
    "power_usage_watts",
    "power_usage_percentage",
)


class _Gpus:
    """NVIDIA GPUs through NVML, or nothing: no library, no driver or no GPU is no error."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.names: list[str] = []
        self.memory_total: list[float] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            for handle in self.handles:
                name = pynvml.nvmlDeviceGetName(handle)
                self.names.append(name.decode() if isinstance(name, bytes) else str(name))
                self.memory_total.append(pynvml.nvmlDeviceGetMemoryInfo(handle).total / _MB)
            self._nvml: Any = pynvml
        except Exception:  # noqa: BLE001 - ImportError, NVMLError: no GPU statistics
            self.handles = []
            self.names = []

    def sample(self, out: dict[str, float]) -> None:
        if not self.handles:
            return
        nvml = self._nvml
        for i, handle in enumerate(self.handles):
            prefix = f"system/gpu_{i}_"
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                out[prefix + "memory_usage_percentage"] = memory.used / memory.total * 100
                out[prefix + "memory_usage_megabytes"] = memory.used / _MB
                out[prefix + "utilization_percentage"] = float(
                    nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                )
            except Exception:  # noqa: BLE001, S112 - one GPU failing leaves the others
                continue
            try:
                power = nvml.nvmlDeviceGetPowerUsage(handle)
                limit = nvml.nvmlDeviceGetEnforcedPowerLimit(handle)
                out[prefix + "power_usage_watts"] = power / 1000
                out[prefix + "power_usage_percentage"] = power / limit * 100
            except Exception:  # noqa: BLE001 - many GPUs report no power
                pass


class Sampler:
    """One sample of the machine and of process ``pid`` (default: this process) per call.

    Counters (network, disk reads and writes) are given since the sampler was made, as
    MLflow's network keys are. CPU percentages are over the time since the previous call;
    the process's may exceed 100 (100 = one core busy).
    """

    def __init__(self, pid: int | None = None) -> None:
        import psutil

        self._psutil = psutil
        self.pid = os.getpid() if pid is None else pid
        try:
            self._process: Any = psutil.Process(self.pid)
        except psutil.Error:
            raise InvalidValueError(f"no process {self.pid} to monitor") from None
        self._gpus = _Gpus()
        psutil.cpu_percent(None)  # the first call only sets the reference point
        self._process.cpu_percent(None)
        self._net0 = psutil.net_io_counters()
        self._disk0 = psutil.disk_io_counters()
        self._io0 = self._process_io()
        self._disk_root = os.path.abspath(os.sep)

    def _process_io(self) -> Any:
        try:
            return self._process.io_counters()
        except (AttributeError, self._psutil.Error):  # not on this OS, or not ours to read
            return None

    def facts(self) -> dict[str, str]:
        """Static facts of the machine, sent once per batch and kept as run tags."""
        psutil = self._psutil
        facts = {
            "cpu_count": str(psutil.cpu_count() or 0),
            "cpu_physical_count": str(psutil.cpu_count(logical=False) or 0),
            "memory_total_megabytes": f"{psutil.virtual_memory().total / _MB:.0f}",
            "gpu_count": str(len(self._gpus.names)),
            "os": platform.platform(),
            "python_version": platform.python_version(),
            "hostname": socket.gethostname(),
        }
        if self._gpus.names:
            facts["gpu_names"] = ", ".join(self._gpus.names)
            facts["gpu_memory_total_megabytes"] = ", ".join(
                f"{m:.0f}" for m in self._gpus.memory_total
            )
        return facts

    @property
    def process_alive(self) -> bool:
        return bool(self._process.is_running())

    def sample(self) -> dict[str, float]:
        psutil = self._psutil
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(self._disk_root)
        net = psutil.net_io_counters()
        out = {
            "system/cpu_utilization_percentage": psutil.cpu_percent(None),
            "system/system_memory_usage_megabytes": memory.used / _MB,
            "system/system_memory_usage_percentage": memory.used / memory.total * 100,
            "system/disk_usage_percentage": disk.percent,
            "system/disk_usage_megabytes": disk.used / _MB,
            "system/disk_available_megabytes": disk.free / _MB,
            "system/network_receive_megabytes": (net.bytes_recv - self._net0.bytes_recv) / _MB,
            "system/network_transmit_megabytes": (net.bytes_sent - self._net0.bytes_sent) / _MB,
            "system/network_receive_packets": float(net.packets_recv - self._net0.packets_recv),
            "system/network_transmit_packets": float(net.packets_sent - self._net0.packets_sent),
        }
        io = psutil.disk_io_counters()
        if io is not None and self._disk0 is not None:
            out["system/disk_read_megabytes"] = (io.read_bytes - self._disk0.read_bytes) / _MB
            out["system/disk_write_megabytes"] = (io.write_bytes - self._disk0.write_bytes) / _MB
        try:
            with self._process.oneshot():
                rss = self._process.memory_info().rss
                out["system/process_cpu_utilization_percentage"] = self._process.cpu_percent(None)
                out["system/process_memory_rss_megabytes"] = rss / _MB
                out["system/process_memory_usage_percentage"] = rss / memory.total * 100
                out["system/process_threads"] = float(self._process.num_threads())
                pio = self._process_io()
                if pio is not None and self._io0 is not None:
                    read = (pio.read_bytes - self._io0.read_bytes) / _MB
                    out["system/process_disk_read_megabytes"] = read
                    write = (pio.write_bytes - self._io0.write_bytes) / _MB
                    out["system/process_disk_write_megabytes"] = write
        except psutil.Error:  # the process ended: the machine's figures go on
            pass
        self._gpus.sample(out)
        return out


@dataclass(frozen=True)
class MonitorSummary:
    """What a :class:`SystemMonitor` did."""

    samples: int
    """Samples taken (one per interval)."""
    points: int
    """Metric points in them."""
    attached: int
    """Samples the destination attached to at least one run."""
    unmatched: int
    """Samples that fell within no run of the participant (counted there, not stored)."""
    pending: int
    """Points not yet stored when the monitor stopped; they wait in the spool."""
    sampler_cpu_seconds: float
    """CPU time the sampling thread used."""
    seconds: float
    """How long the monitor ran."""

    @property
    def cpu_percentage(self) -> float:
        """The sampling thread's CPU time over the time it ran, in percent of one core."""
        return 100 * self.sampler_cpu_seconds / self.seconds if self.seconds else 0.0

    def line(self, participant: str) -> str:
        text = (
            f"{self.samples} samples of {participant} in {self.seconds:.0f} s: "
            f"{self.attached} attached to runs, {self.unmatched} within no run"
        )
        if self.pending:
            text += f", {self.pending} points waiting in the spool"
        return text + f"; sampling used {self.cpu_percentage:.2f}% of a core"


class _SampleKind(MetricsKind):
    """Hardware samples ride in metric batches whose run ids are ``collaboration/participant``
    (``storage.samples``), sent to the samples route instead of the metric route."""

    noun = "hardware samples"

    def __init__(self, encode: Callable[[MetricBatch], bytes], send: Callable[[bytes], object]):
        self._encode = encode
        self._send = send

    def encode(self, part: MetricBatch) -> bytes:
        return self._encode(part)

    def send(self, transport: Transport, body: bytes) -> None:
        self._send(body)


class SystemMonitor:
    """Samples hardware statistics every ``interval`` seconds while it runs, and sends them
    for one participant of one collaboration.

    ``target`` is a server URL or a store folder (as for ``FederatedTracker``); ``pid`` the
    process to watch besides the machine (default: this one). Use it as a context manager
    around training, or call :meth:`start` and :meth:`stop`::

        with SystemMonitor("http://localhost:5500", collaboration="c", participant="w1"):
            train()
    """

    def __init__(
        self,
        target: str | os.PathLike[str] | None = None,
        *,
        collaboration: str,
        participant: str,
        interval: float = 1.0,
        pid: int | None = None,
        config: TrackerConfig | None = None,
        transport: Transport | None = None,
    ) -> None:
        if not interval > 0:
            raise InvalidValueError("the sampling interval must be a positive number of seconds")
        self.collaboration = collaboration
        self.participant = participant
        self.target = target_name = target_of(collaboration, participant)
        self.interval = float(interval)
        self.config = config or TrackerConfig()
        self.sampler = Sampler(pid)
        self._facts = {target_name: self.sampler.facts()}
        self._owns_transport = transport is None
        self._transport = transport or transport_for(
            target, request_timeout=self.config.request_timeout
        )
        self._spool = Spool(
            self.config.spool_root,
            f"system-{self._transport.destination_id}",
            f"{self._transport.tracking_uri} (hardware samples)",
        )
        self._counts = {"attached": 0, "unmatched": 0}
        self._counts_lock = threading.Lock()
        self._sender = Sender(
            self._transport,
            self._spool,
            self.config,
            _SampleKind(lambda batch: encode_samples(batch, self._facts), self._send),
            name=f"synergos-system-sender-{participant}",
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._samples = 0
        self._points = 0
        self._cpu = 0.0
        self._started = 0.0
        self._summary: MonitorSummary | None = None

    def _send(self, body: bytes) -> None:
        write: Callable[[bytes], Any] | None = getattr(self._transport, "write_samples", None)
        if write is None:
            raise InvalidValueError(f"{self._transport.tracking_uri} takes no hardware samples")
        answer = write(body) or {}
        with self._counts_lock:
            for name in self._counts:
                self._counts[name] += int(answer.get(name, 0))

    @property
    def tracking_uri(self) -> str:
        return self._transport.tracking_uri

    @property
    def samples(self) -> int:
        return self._samples

    def start(self) -> SystemMonitor:
        if self._thread is None:
            self._started = time.monotonic()
            self._thread = threading.Thread(
                target=self._loop, name=f"synergos-system-{self.participant}", daemon=True
            )
            self._thread.start()
        return self

    def _loop(self) -> None:
        begin = time.thread_time()
        tick = time.monotonic()
        try:
            while True:
                self._take()
                self._cpu = time.thread_time() - begin
                tick += self.interval
                if self._stop.wait(max(tick - time.monotonic(), 0.0)):
                    break
            self._take()  # the state at the end, so even a short run has two samples
        finally:
            self._cpu = time.thread_time() - begin

    def _take(self) -> None:
        stamp = time.time_ns() // 1_000_000
        values = self.sampler.sample()
        n = len(values)
        points = MetricBatch(
            [self.target] * n, list(values), [0] * n, list(values.values()), [stamp] * n
        )
        self._sender.add(points)
        self._samples += 1
        self._points += n

    def stop(self, timeout: float | None = None) -> MonitorSummary:
        """Stop sampling, send what is left (waiting at most ``timeout`` seconds, default the
        config's ``flush_timeout``); what is not sent stays in the spool for the next
        monitor of the same destination."""
        if self._summary is not None:
            return self._summary
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        seconds = time.monotonic() - self._started if self._started else 0.0
        wait = self.config.flush_timeout if timeout is None else timeout
        try:
            pending = self._sender.flush(wait)
        finally:
            self._sender.close()
            self._spool.own.release()
            if self._owns_transport:
                self._transport.close()
        with self._counts_lock:
            counts = dict(self._counts)
        self._summary = MonitorSummary(
            samples=self._samples,
            points=self._points,
            attached=counts["attached"],
            unmatched=counts["unmatched"],
            pending=pending,
            sampler_cpu_seconds=self._cpu,
            seconds=seconds,
        )
        return self._summary

    def __enter__(self) -> SystemMonitor:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


def target_of(collaboration: str, participant: str) -> str:
    return target(collaboration, participant)
