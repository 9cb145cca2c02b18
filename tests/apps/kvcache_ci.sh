#!/usr/bin/env bash
# Starts hydra-kvcache the way scripts/run does (no terminal, in the
# background), waits for its port, and talks to it with real clients:
#   memccapable -a      every ascii test of libmemcached-tools (listed)
#   memcstat, memccp, memccat, memcflush
#   hydra-bench memcache  the closed-loop client of scripts/bench-kvcache
#   tests/apps/kvcache_clients.py   pymemcache over 32 connections, bad
#                       input, a client that never reads, 10,000 idle
#                       connections, slowloris
#   tests/apps/kvcache_diff.py      byte-for-byte replies against Debian's
#                       memcached started beside it
# then sends SIGTERM and checks it stops within 2 s with status 0.
# Ports are derived from the process id. Exit 0 when all of it holds.
set -uo pipefail
cd "$(dirname "$0")/../.."

# below the ephemeral range (32768 and up) that the clients' own connections
# (10,000 at a time here) take their local ports from
port=$((20000 + $$ % 6000 * 2))
mport=$((port + 1))
log=/tmp/hydra-kvcache-ci.$$.log
fail=0
note() { echo "   $*"; }
bad() {
    echo "   FAIL: $*"
    fail=1
}

for t in memccapable memcstat memccp memccat memcflush memcached; do
    command -v $t >/dev/null || { echo "kvcache ci: $t missing (libmemcached-tools, memcached)" >&2; exit 77; }
done
/usr/bin/python3 -c 'import pymemcache' 2>/dev/null || { echo "kvcache ci: python3-pymemcache missing" >&2; exit 77; }

# the default: direct replies (the owners write forwarded replies
# themselves); -o direct=0's path is the one test_kvcache_server's batches
# and every earlier run covered
setsid scripts/run -p "$port" -t 2 -c 11000 -o read_timeout=2 </dev/null >"$log" 2>&1 &
pid=$!
up=0
for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        up=1
        break
    fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.2
done
if [ $up = 0 ]; then
    cat "$log"
    echo "kvcache ci: the server did not come up" >&2
    kill $pid 2>/dev/null
    exit 1
fi
note "server up on 127.0.0.1:$port (pid $pid)"

out=$(timeout 300 memccapable -h 127.0.0.1 -p "$port" -a 2>&1)
echo "$out" | grep -q "All tests passed" || bad "memccapable: $(echo "$out" | grep -v pass | tail -5)"
note "memccapable -a: $(echo "$out" | grep -c '\[pass\]') tests pass: $(echo "$out" | grep '\[pass\]' | sed 's/ *\[pass\]//' | paste -sd, | sed 's/,/, /g')"

memcstat --servers=127.0.0.1:$port | grep -q "curr_items" || bad "memcstat"
f=/tmp/hydra-kvcache-ci.$$.txt
echo "hello from memccp" >"$f"
memccp --servers=127.0.0.1:$port "$f" || bad "memccp"
[ "$(memccat --servers=127.0.0.1:$port "$(basename "$f")")" = "hello from memccp" ] || bad "memccat"
memcflush --servers=127.0.0.1:$port || bad "memcflush"
memccat --servers=127.0.0.1:$port "$(basename "$f")" >/dev/null 2>&1 && bad "memccat found the key after memcflush"
rm -f "$f"
note "memcstat, memccp, memccat, memcflush ok"

# hydra-bench's closed-loop client (scripts/bench-kvcache): every reply checked
hb=build/apps/bench/hydra-bench
if [ -x $hb ]; then
    for mv in 9:1,32 1:1,1024; do
        line=$(MC_SERVER=127.0.0.1:$port MC_CONNS=20 MC_MIX=${mv%,*} MC_VALUE=${mv#*,} MC_KEYS=2000 \
            MC_SECS=1 timeout 120 $hb memcache 2>&1)
        grep -q '^bench=memcache value=[1-9].* errors=0 ' <<<"$line" ||
            bad "hydra-bench memcache ${mv/,/, } B: $(tail -3 <<<"$line")"
    done
    # 600 KB values from 40 connections at once: the forwards of one turn
    # would overflow one message; each batch stays within it
    line=$(MC_SERVER=127.0.0.1:$port MC_CONNS=40 MC_MIX=1:1 MC_VALUE=600000 MC_KEYS=40 \
        MC_SECS=1 timeout 120 $hb memcache 2>&1)
    grep -q '^bench=memcache value=[1-9].* errors=0 ' <<<"$line" ||
        bad "hydra-bench memcache 600 KB values: $(tail -3 <<<"$line")"
    note "hydra-bench memcache (9:1 32 B, 1:1 1 KiB, 1:1 600 KB; every reply checked) ok"
fi

timeout 600 /usr/bin/python3 tests/apps/kvcache_clients.py "127.0.0.1:$port" --idle 10000 --read-timeout 2 |
    sed 's/^/   /'
[ "${PIPESTATUS[0]}" = 0 ] || bad "kvcache_clients.py"

user=()
[ "$(id -u)" = 0 ] && user=(-u nobody)
memcached "${user[@]}" -p "$mport" -U 0 -l 127.0.0.1 -t 2 -m 64 &
mpid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$mport") 2>/dev/null && break; sleep 0.1; done
timeout 300 /usr/bin/python3 tests/apps/kvcache_diff.py --memcached "127.0.0.1:$mport" --server "127.0.0.1:$port" |
    tail -20 | sed 's/^/   /'
[ "${PIPESTATUS[0]}" = 0 ] || bad "kvcache_diff.py"
kill $mpid
wait $mpid 2>/dev/null

t0=$(date +%s%N)
kill -TERM $pid
wait $pid
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
[ $rc = 0 ] || bad "exit status $rc after SIGTERM"
[ $ms -le 2000 ] || bad "SIGTERM took $ms ms"
note "SIGTERM: stopped in $ms ms, status $rc"
grep -q "hydra-kvcache: listening" "$log" || bad "no listening line in the log"
[ $fail = 0 ] || { echo "   server log:"; tail -20 "$log" | sed 's/^/   /'; }
rm -f "$log"
exit $fail
