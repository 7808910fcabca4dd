"""``rpc="host:port:key"``: parse it, check the tracker answers, make a MetaSchedule runner."""
from __future__ import annotations

import socket
from dataclasses import dataclass

from ...errors import UserError


@dataclass(frozen=True)
class TrackerAddress:
    host: str
    port: int
    key: str

    def __str__(self) -> str:
        return f"{self.host}:{self.port}:{self.key}"


def parse(spec: str) -> TrackerAddress:
    """``host:port:key`` → :class:`TrackerAddress` (one-line error on anything else)."""
    parts = spec.rsplit(":", 2)
    if len(parts) != 3 or not all(parts) or not parts[1].isdigit():
        raise UserError(f"rpc {spec}: expected host:port:key, e.g. 127.0.0.1:9190:rk3588",
                        arg="rpc")
    return TrackerAddress(parts[0], int(parts[1]), parts[2])


def check(addr: TrackerAddress, timeout: float = 5.0) -> int:
    """Fail fast unless the tracker answers and has a free server under the key.

    Returns the number of servers registered under ``addr.key``.
    """
    try:
        with socket.create_connection((addr.host, addr.port), timeout=timeout):
            pass
    except OSError as e:
        raise UserError(f"rpc {addr}: tracker unreachable ({e.strerror or e}); start "
                        f"`python -m tvm.exec.rpc_tracker --port {addr.port}` there or fix "
                        "host:port", arg="rpc") from None
    from tvm import rpc
    try:
        summary = rpc.connect_tracker(addr.host, addr.port).summary()
    except Exception as e:  # noqa: BLE001 - anything here means "not a TVM tracker"
        raise UserError(f"rpc {addr}: {addr.host}:{addr.port} is not a TVM RPC tracker "
                        f"({str(e).splitlines()[-1][:120]})", arg="rpc") from None
    n = sum(1 for s in summary.get("server_info", []) if _key_of(s) == addr.key)
    queue = summary.get("queue_info", {})
    if n == 0 and addr.key not in queue:
        raise UserError(f"rpc {addr}: no RPC server registered under key {addr.key!r}; start "
                        f"`python -m tvm.exec.rpc_server --tracker {addr.host}:{addr.port} "
                        f"--key {addr.key}` on the device", arg="rpc")
    return n


def _key_of(server_info: dict) -> str:
    key = str(server_info.get("key", ""))
    return key.split(":", 1)[1] if key.startswith("server:") else key


def runner(addr: TrackerAddress, session_timeout: int = 120, max_workers: int = 1):
    """A MetaSchedule ``RPCRunner`` that measures through the tracker."""
    from tvm.s_tir.meta_schedule.runner import RPCConfig, RPCRunner
    cfg = RPCConfig(tracker_host=addr.host, tracker_port=addr.port, tracker_key=addr.key,
                    session_timeout_sec=session_timeout)
    return RPCRunner(rpc_config=cfg, max_workers=max_workers)
