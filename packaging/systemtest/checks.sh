#!/bin/sh
# systemtest checks, run as root inside the booted container (packaging/systemtest.sh)
# usage: checks.sh OLD.deb NEW.deb   (both in /root)
set -eu
old=/root/$1 new=/root/$2
CONFIG=/etc/gateway/gateway.toml
RECEIVED=/var/lib/gateway-receiver/readings.db

step() { echo "== $*"; }
fail() { echo "FAILED: $*"; journalctl --no-pager -n 40 -u gateway.service; exit 1; }
wait_for() {  # wait_for WHAT SECONDS COMMAND...
    what=$1 deadline=$(($(date +%s) + $2))
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "timed out waiting for $what"
        sleep 0.5
    done
}
prop() { systemctl show -p "$1" --value gateway.service; }
# readings keep flowing, so delivery is compared for the readings taken before $CUTOFF (epoch ms)
CUTOFF=""
now_ms() { python3 -c 'import time; print(time.time_ns() // 1000000)'; }
received() { python3 /root/count.py "$RECEIVED" "$CUTOFF"; }
committed() { gateway buffer export --config "$CONFIG" --sensor weather-1 --format jsonl ${CUTOFF:+--until "$CUTOFF"} | wc -l; }
is_prop() { [ "$(prop "$1")" = "$2" ]; }
more_than() { [ "$("$1")" -gt "$2" ]; }
all_delivered() { [ "$(received)" -eq "$(committed)" ] && [ "$(committed)" -gt 0 ]; }
outbox_rows() { gateway status --config "$CONFIG" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["store"]["outbox_rows"])'; }
has_backlog() { [ "$(outbox_rows)" -gt 0 ]; }

step "install $1"
dpkg -i "$old" | sed 's/^/  /'
test -x /opt/rostock-gateway/venv/bin/python || fail "no venv"
[ "$(stat -c '%U %a' /etc/gateway/gateway.key.pem)" = "gateway 600" ] || fail "key not the agent's own"
key_before=$(sha256sum /etc/gateway/gateway.key.pem)

step "simulator, broker, receiver"
mkdir -p /etc/gateway-receiver/keys /etc/systemd/system/gateway.service.d
cp /etc/gateway/gateway.pub.pem /etc/gateway-receiver/keys/gw-systemtest.pem
chmod 0644 /etc/gateway-receiver/keys/gw-systemtest.pem
install -m 0640 -g gateway /root/gateway.toml "$CONFIG"
cp /root/pts.conf /etc/systemd/system/gateway.service.d/systemtest.conf
systemctl daemon-reload
# the simulator comes from the harness wheel the package ships (not installed by postinst), into a folder
# of its own so that the upgrade below, which rebuilds the agent's venv, leaves it alone
PIP_CONFIG_FILE=/dev/null /opt/rostock-gateway/venv/bin/python -m pip install --isolated --quiet --no-index \
    --no-deps --disable-pip-version-check --target /opt/gateway-harness /opt/rostock-gateway/wheels/rostock_gateway_hil-*.whl
systemd-run --quiet --unit=gateway-sim -p User=gateway -p RuntimeDirectory=gateway-sim \
    -p Environment=PYTHONPATH=/opt/gateway-harness \
    /opt/rostock-gateway/venv/bin/python -m hil.sims.nmea_station --link /run/gateway-sim/ttyWEATHER --rate 5
systemctl start mosquitto.service gateway-receiver.service
wait_for "the simulator's pty" 30 test -e /run/gateway-sim/ttyWEATHER
gateway config check "$CONFIG"

step "systemctl enable --now gateway (Type=notify: returns at READY=1)"
systemctl enable --now gateway.service
is_prop ActiveState active && is_prop SubState running || fail "not running after start"
echo "  StatusText at READY: $(prop StatusText)"
pid=$(prop MainPID)
echo "  hardening in force: $(grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/"$pid"/status | tr -s '\t\n' '  ')"
echo "  $(systemd-analyze security gateway.service 2>/dev/null | tail -n 1)"
grep -q '^Seccomp:.*2' /proc/"$pid"/status || fail "no seccomp filter"

step "gateway selftest: the coder library of the package loads in the agent"
coder=$(gateway selftest --config "$CONFIG" --json --timeout 5 | grep '"check": "coder"' || true)
echo "  $coder"
case "$coder" in *'"passed": true'*) ;; *) fail "selftest: coder library" ;; esac

step "readings reach the receiver"
wait_for "readings at the receiver" 60 more_than received 0
sleep 8  # one STATUS= refresh later (every 7.5 s with WatchdogSec=30)
echo "  received $(received); StatusText: $(prop StatusText)"

step "the hardened metrics unit and a second receiver from the template"
systemctl start gateway-metrics.service
grep -q '^gateway_agent_up 1$' /var/lib/prometheus/node-exporter/gateway.prom || fail "metrics: agent not up"
echo "  $(grep -c . /var/lib/prometheus/node-exporter/gateway.prom) metric lines, gateway_agent_up 1"
systemctl start gateway-receiver@2.service
wait_for "readings at gateway-receiver@2" 60 sh -c '[ "$(python3 /root/count.py /var/lib/gateway-receiver-2/readings.db)" -gt 0 ]'
echo "  gateway-receiver@2 (client id gateway-receiver-2) stored $(python3 /root/count.py /var/lib/gateway-receiver-2/readings.db)"
systemctl stop gateway-receiver@2.service

step "SIGSTOP the agent: the watchdog must catch it"
restarts=$(prop NRestarts)
before=$(committed)
systemctl kill --kill-whom=main -s SIGSTOP gateway.service
wait_for "a restart after the watchdog timeout" 120 sh -c "[ \$(systemctl show -p NRestarts --value gateway) -gt $restarts ]"
wait_for "the agent running again" 60 is_prop SubState running
journalctl --no-pager -u gateway.service | grep -m1 "Watchdog timeout" | sed 's/^/  /' || fail "no watchdog timeout logged"
[ "$(prop MainPID)" != "$pid" ] || fail "same process"
# the restarted agent has committed readings of its own, and every reading committed before and after
# the SIGSTOP has arrived exactly once
wait_for "new readings after the restart" 60 more_than committed $((before + 20))
CUTOFF=$(now_ms)
wait_for "every committed reading at the receiver" 90 all_delivered
echo "  committed before SIGSTOP: $before; up to now committed $(committed), received $(received): nothing lost"
CUTOFF=""

step "an invalid config leaves the unit failed, not restarting"
cp "$CONFIG" /root/good.toml
printf 'gateway_id = "gw-systemtest"\nunknown_key = 1\n' >"$CONFIG"
scheduled() { journalctl --no-pager -u gateway.service | grep -c "Scheduled restart job" || true; }
restarts=$(scheduled)
systemctl restart gateway.service && fail "started with an invalid config"
sleep 12  # more than RestartSec=5 twice: a restart loop would have shown by now
is_prop ActiveState failed || fail "not failed: $(prop ActiveState)"
[ "$(scheduled)" = "$restarts" ] || fail "restarted on an invalid config"
[ "$(prop ExecMainStatus)" = 2 ] || fail "exit status $(prop ExecMainStatus), not 2"
echo "  ActiveState=failed, ExecMainStatus=2, no restart scheduled in 12 s"
install -m 0640 -g gateway /root/good.toml "$CONFIG"
systemctl reset-failed gateway.service
systemctl start gateway.service

step "upgrade to $2 with a backlog in the buffer"
systemctl stop mosquitto.service
wait_for "batches waiting in the outbox" 60 has_backlog
echo "  outbox before the upgrade: $(outbox_rows) batches"
dpkg -i "$new" | sed 's/^/  /'
[ "$(dpkg-query -W -f '${Version}' rostock-gateway)" = "${2#rostock-gateway_}" ] 2>/dev/null || true
echo "  installed: $(dpkg-query -W -f '${Version}' rostock-gateway)"
wait_for "the agent back after the upgrade" 60 is_prop SubState running
[ "$(sha256sum /etc/gateway/gateway.key.pem)" = "$key_before" ] || fail "the key changed"
cmp -s /root/good.toml "$CONFIG" || fail "the admin's config was replaced"
has_backlog || fail "the buffer lost its backlog"
systemctl start mosquitto.service
CUTOFF=$(now_ms)
wait_for "the backlog delivered after the upgrade" 120 all_delivered
echo "  up to now committed $(committed), received $(received): the backlog arrived"
CUTOFF=""

step "downgrade to $1"
dpkg -i "$old" | sed 's/^/  /'
wait_for "the agent after the downgrade" 60 is_prop SubState running
echo "  installed: $(dpkg-query -W -f '${Version}' rostock-gateway), $(prop StatusText)"

step "remove keeps state and keys; purge removes them"
systemctl stop gateway-sim.service
dpkg -r rostock-gateway >/dev/null
[ ! -e /opt/rostock-gateway/venv ] || fail "venv left after remove"
[ -e /var/lib/gateway/buffer.db ] && [ -e /etc/gateway/gateway.key.pem ] || fail "remove deleted state or keys"
dpkg -P rostock-gateway >/dev/null
[ ! -e /var/lib/gateway ] && [ ! -e /etc/gateway ] || fail "purge left state or keys"
echo "  remove kept /var/lib/gateway and the key; purge removed them"
