"""Profile (d) of bench/air_bench.py behind a TLS terminator: what stateful TLS resumption saves per LTE drop.

Mosquitto 2.0 issues stateless session tickets (the whole session, encrypted: a 206-byte identity in
every resumed ClientHello and a 271-byte ticket after every handshake) and has no setting for stateful
resumption. A TLS terminator in front of it can keep the sessions itself and hand out 32-byte
identities. This runs air_bench's connect measurement and profile (d) (the agent, ten pty sensors,
the receiver, the counting relay, a cut every 10 min) against each broker side:

- `mosquitto`: Mosquitto's own TLS listener, as air_bench measures it;
- `mosquitto-sha256`: the same with `ciphers_tls1.3 TLS_AES_128_GCM_SHA256` (32-byte binder,
  Finished and secrets instead of 48);
- `haproxy`: HAProxy terminating TLS with `no-tls-tickets`, Mosquitto's plain listener behind it;
- `haproxy-sha256`: the same with `ciphersuites TLS_AES_128_GCM_SHA256`.

Needs HAProxy (Debian: `apt-get install haproxy`; the haproxy variants are skipped with a note
without it). By default `mosquitto` (the baseline) and `haproxy`, about 80 s each;
`TERMINATOR_BENCH_VARIANTS=mosquitto,mosquitto-sha256,haproxy,haproxy-sha256` picks others. The
figures are operator advice (docs/lte.md, "What an LTE drop costs"). Prints informational lines, then
ONE JSON object as the last line: per variant its connect costs and (d), and `d_vs_mosquitto`, its
(d) divided by the baseline's of the same run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from air_bench import (
    PROFILES,
    QUANTITIES,
    Bench,
    Replay,
    connect_costs,
    load_column,
    run_profile,
    start_receiver,
)

from hil.broker import Mosquitto, free_port
from hil.tls import ServerCertificate, loopback_certificate

VARIANTS = ("mosquitto", "mosquitto-sha256", "haproxy", "haproxy-sha256")
SHA256_SUITE = "TLS_AES_128_GCM_SHA256"
#: the configuration docs/lte.md gives operators: sessions live longer than the gap between a
#: gateway's connections (HAProxy's default of 300 s is shorter than a 900-s budget), and the idle
#: timeouts outlast the agent's 1,080-s MQTT keepalive (TCP keepalive probes carry no data)
HAPROXY_CONFIG = """global
  tune.ssl.lifetime 7200
defaults
  mode tcp
  timeout connect 10s
  timeout client 30m
  timeout server 30m
frontend mqtts
  bind 127.0.0.1:{port} ssl crt {pem} no-tls-tickets ssl-min-ver TLSv1.3{suites}
  default_backend mosquitto
backend mosquitto
  server broker 127.0.0.1:{backend}
"""


def start_haproxy(
    workdir: Path, certificate: ServerCertificate, backend: int, *, sha256: bool
) -> tuple[subprocess.Popen[bytes], int]:
    """HAProxy terminating TLS on a free port in front of `backend`; the process and the port."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    port = free_port()
    pem = workdir / "haproxy.pem"
    pem.write_text(certificate.cert_file.read_text() + certificate.key_file.read_text())
    config = workdir / "haproxy.cfg"
    suites = f" ciphersuites {SHA256_SUITE}" if sha256 else ""
    config.write_text(HAPROXY_CONFIG.format(port=port, pem=pem, suites=suites, backend=backend))
    log = (workdir / "haproxy.log").open("wb")
    process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    time.sleep(1.0)  # it binds within milliseconds; a config error ends it at once
    if process.poll() is not None:
        raise RuntimeError(f"haproxy exited: {(workdir / 'haproxy.log').read_text()}")
    return process, port


async def measure(variant: str, workdir: Path) -> dict[str, Any]:
    """Connect costs and profile (d) against one broker side."""
    certificate = loopback_certificate(workdir / "tls")
    broker = Mosquitto(workdir / "broker", tls=certificate)
    if variant == "mosquitto-sha256":
        with broker.config_path.open("a") as config:
            config.write(f"ciphers_tls1.3 {SHA256_SUITE}\n")  # a setting of the TLS listener above it
    proxy: subprocess.Popen[bytes] | None = None
    with broker:
        try:
            if variant.startswith("haproxy"):
                proxy, port = start_haproxy(
                    workdir, certificate, broker.port, sha256=variant.endswith("sha256")
                )
                broker.tls_port = port  # the relay, and so the agent, go through the terminator
            bench = Bench(workdir, broker, certificate.ca_file, workdir / "receiver.db")
            full, resumed, did_resume = await connect_costs(port_of(broker), certificate.ca_file)
            replay = Replay({g: load_column(stem) for g, (stem, _, _, _) in QUANTITIES.items()})
            start_receiver(bench, ["air-d"])
            try:
                outcome = await run_profile(bench, next(p for p in PROFILES if p.name == "d"), replay, full)
            finally:
                if bench.receiver is not None:
                    bench.receiver.terminate()
                    bench.receiver.wait(10)
        finally:
            if proxy is not None:
                proxy.terminate()
                proxy.wait(10)
    print(f"{variant}: {outcome}", flush=True)
    return {
        "connect_bytes_full": full,
        "connect_bytes_resumed": resumed,
        "tls_resumed": did_resume,
        "d_kb_per_day": outcome.kb_per_day,
        "d_max_delay_s": outcome.max_delay_s,
        "d_lost": outcome.lost,
    }


def port_of(broker: Mosquitto) -> int:
    """The TLS port the agent connects to (the terminator's, when there is one)."""
    if broker.tls_port is None:
        raise RuntimeError("the broker has no TLS listener")
    return broker.tls_port


def main() -> None:
    chosen = os.environ.get("TERMINATOR_BENCH_VARIANTS", "mosquitto,haproxy").split(",")
    have_haproxy = shutil.which("haproxy") is not None or os.access("/usr/sbin/haproxy", os.X_OK)
    result: dict[str, Any] = {}
    for variant in (v for v in VARIANTS if v in chosen):
        if variant.startswith("haproxy") and not have_haproxy:
            print(f"{variant}: skipped, haproxy is not installed (apt-get install haproxy)", flush=True)
            continue
        workdir = Path(tempfile.mkdtemp(prefix=f"terminator-bench-{variant}-"))
        try:
            result[variant] = asyncio.run(measure(variant, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    baseline = result.get("mosquitto", {}).get("d_kb_per_day")
    for figures in result.values():
        if baseline:
            figures["d_vs_mosquitto"] = round(figures["d_kb_per_day"] / baseline, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
