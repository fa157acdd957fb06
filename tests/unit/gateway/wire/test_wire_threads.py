"""gateway.wire from several threads at once: the agent encodes in worker threads, and the wire package
is a library that receivers and tools call from their own.

The check runs in a child process, so that a regression (python-zstandard's contexts shared between
threads crashed the process with a segmentation fault) fails this test with the child's exit status
instead of taking the whole test run down.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]

# Four simulated gateways, four batches each of four series, 1 to 300 readings a series (small bodies,
# which try several zstd levels, and larger ones): every thread encodes its gateway's batches again
# and again, compares them with the bytes encoded before any thread started, then verifies and
# decodes them.
CHILD = textwrap.dedent(
    """
    import threading
    from hil.fleet import SimulatedGateway
    from gateway import wire

    gateways = [SimulatedGateway(f"gw-{i}", series=4) for i in range(4)]
    wanted = {g.gateway_id: [g.body(seq, per_series) for seq, per_series in enumerate((1, 5, 60, 300))]
              for g in gateways}
    differ = []

    def work(g):
        for _ in range(ROUNDS):
            for seq, per_series in enumerate((1, 5, 60, 300)):
                body = g.body(seq, per_series)
                if body != wanted[g.gateway_id][seq]:
                    differ.append((g.gateway_id, seq))
                batch = wire.verify_with_key(wire.sign(body, g.key, g.kid), g.key.public_key())
                if batch.seq != seq or len(batch.readings.ts_ms) != 4 * per_series:
                    differ.append((g.gateway_id, seq, "decoded"))

    threads = [threading.Thread(target=work, args=(g,)) for g in gateways]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("differ", len(differ))
    """
)


def test_threads_encoding_and_decoding_at_once_get_the_bytes_and_values_of_one_thread() -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD.replace("ROUNDS", "12")],
        check=False,  # the exit status is the assertion
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["differ", "0"]
