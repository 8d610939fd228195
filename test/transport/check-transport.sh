#!/bin/bash
# check-transport.sh - the driver's gRPC server at the wire, with curl as an HTTP/2 client
# (prior knowledge, over the unix socket): status codes, trailers-only errors, the
# grpc-message of each refusal, limits, deadlines, SIGTERM with a connection open.
# usage: test/transport/check-transport.sh DRIVER [core|nghttp2]   (default: nghttp2 unless
#        the driver links libgrpc)
# The driver runs on this host in direct mode with no PMEM (Identity and the refusals
# need none). Checks of what only the nghttp2 transport does (gRPC core accepts a
# wrong content-type, ignores a bad grpc-timeout, ...) are skipped with core.
# Then attack-h2.py (nghttp2 only): hostile HTTP/2 clients against a fresh driver, and
# attack-http.py: slow and numerous clients against the metrics and webhooks servers.
# Ends with "N passed, N failed[, N skipped]"; exit status 1 when a check failed.
set -uo pipefail
DRIVER=$(realpath "$1")
case "$(ldd "$DRIVER")" in *libgrpc*) linked=core ;; *) linked=nghttp2 ;; esac
TRANSPORT=${2:-$linked}
echo "# $DRIVER, $TRANSPORT transport"
work=$(mktemp -d /tmp/check-transport.XXXXXX)
S=$work/csi.sock
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
passed=0 failed=0 skipped=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
fail() { echo "FAIL - $1"; failed=$((failed + 1)); }
skip() { echo "SKIP - $1"; skipped=$((skipped + 1)); }
if ! curl -V | grep -q HTTP2; then
    if [ "${CI:-}" = true ]; then fail "curl without HTTP/2"; else skip "curl without HTTP/2"; fi
    echo "$passed passed, $failed failed, $skipped skipped"; [ $failed = 0 ]; exit
fi

"$DRIVER" -endpoint="unix://$S" -deviceManager=direct -nodeid=n1 -statePath="$work/state" -v=0 \
    >"$work/driver.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.1; done

# call NAME EXPECT_HTTP EXPECT_GRPC_STATUS MESSAGE_PART PATH BODY_HEX [curl args...]
# BODY_HEX: the request body as hex ("-" for none).
call() {
    local name=$1 want_http=$2 want_status=$3 want_msg=$4 path=$5 body=$6; shift 6
    local args=(-sS --http2-prior-knowledge --unix-socket "$S" -m 10 -D "$work/h" -o "$work/b" "$@")
    if [ "$body" != - ]; then
        printf "$(printf '%s' "$body" | sed 's/../\\x&/g')" >"$work/req"
        args+=(--data-binary "@$work/req")
    else
        args+=(-X POST)
    fi
    curl "${args[@]}" "http://localhost$path" 2>"$work/err"
    local rc=$? http status msg
    http=$(awk 'NR == 1 {print $2}' "$work/h" | tr -d '\r')
    status=$(grep -i '^grpc-status:' "$work/h" | tail -1 | awk '{print $2}' | tr -d '\r')
    msg=$(grep -i '^grpc-message:' "$work/h" | tail -1 | cut -d' ' -f2- | tr -d '\r')
    if [ "$rc" = 0 ] && [ "$http" = "$want_http" ] && [ "$status" = "$want_status" ] &&
        [[ "$msg" == *"$want_msg"* ]]; then
        ok "$name: HTTP $http, grpc-status $status${msg:+, \"$msg\"}"
    else
        fail "$name: want HTTP $want_http, grpc-status $want_status, a message with \"$want_msg\"; got curl rc $rc $(cat "$work/err"), HTTP $http, grpc-status ${status:-none}, message \"$msg\""
    fi
}
G=(-H "te: trailers" -H "content-type: application/grpc")
h2only() { if [ "$TRANSPORT" = nghttp2 ]; then "$@"; else skip "$2 (nghttp2 transport only)"; fi; }

call "Probe" 200 0 "" /csi.v1.Identity/Probe 0000000000 "${G[@]}"
hex() { od -An -tx1 -v "$1" | tr -d ' \n'; }
if [ "$(head -c 5 "$work/b" | hex /dev/stdin)" = "0000000004" ] && [ "$(stat -c %s "$work/b")" = 9 ]; then
    ok "Probe: the answer is one length-prefixed message ($(stat -c %s "$work/b") bytes)"
else
    fail "Probe: the body is not one length-prefixed message: $(hex "$work/b" | head -c 40)"
fi
call "unknown method" 200 12 "unknown method /csi.v1.Identity/Nope" /csi.v1.Identity/Nope - "${G[@]}"
call "a request that is not the method's message" 200 3 "DeleteVolumeRequest" /csi.v1.Controller/DeleteVolume \
    0000000003ffffff "${G[@]}"
call "a NUL in volume_id (validated before unpacking)" 200 3 "volume_id" /csi.v1.Controller/DeleteVolume \
    00000000040a02610062 "${G[@]}"
h2only call "no te: trailers" 200 13 "te header" /csi.v1.Identity/Probe - -H "content-type: application/grpc"
h2only call "content-type application/json" 415 13 "content-type" /csi.v1.Identity/Probe - \
    -H "te: trailers" -H "content-type: application/json"
h2only call "compressed flag without grpc-encoding" 200 13 "compressed" /csi.v1.Identity/Probe 0100000000 "${G[@]}"
h2only call "compressed flag 2" 200 13 "compressed flag 2" /csi.v1.Identity/Probe 0200000000 "${G[@]}"
h2only call "grpc-encoding gzip" 200 12 "gzip" /csi.v1.Identity/Probe - "${G[@]}" -H "grpc-encoding: gzip"
h2only call "malformed grpc-timeout" 200 13 "grpc-timeout" /csi.v1.Identity/Probe - "${G[@]}" \
    -H "grpc-timeout: 1x"
h2only call "no message" 200 13 "no message" /csi.v1.Identity/Probe - "${G[@]}"
h2only call "message cut short" 200 13 "7 of 14 bytes" /csi.v1.Identity/Probe 00000000096162 "${G[@]}"
h2only call "message length over the limit" 200 8 "larger than max" /csi.v1.Identity/Probe 007f000009 "${G[@]}"
h2only call "20 kB of headers" 200 8 "headers larger" /csi.v1.Identity/Probe - "${G[@]}" \
    -H "x-big: $(head -c 20000 /dev/zero | tr '\0' a)"
h2only call "bytes outside ASCII in grpc-message are percent-encoded" 200 12 "gz%C3%A9" /csi.v1.Identity/Probe \
    - "${G[@]}" -H "grpc-encoding: gz$(printf '\303\251')"

# A deadline that passes while the request body is still on its way (curl uploads it at
# 20 bytes/s): DEADLINE_EXCEEDED, then RST_STREAM NO_ERROR to stop the upload, which curl
# 7.88 reports as error 92 without showing the headers; the status is read from the log.
if [ "$TRANSPORT" = nghttp2 ]; then
    printf '\0\0\0\0\144' >"$work/slow"
    head -c 100 /dev/zero >>"$work/slow"
    t0=$(date +%s%N)
    curl -sS --http2-prior-knowledge --unix-socket "$S" -m 8 --limit-rate 20 "${G[@]}" -H "grpc-timeout: 500m" \
        --data-binary "@$work/slow" -o /dev/null http://localhost/csi.v1.Identity/Probe 2>/dev/null
    rc=$? ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    if grep -q 'method="Probe".*code="DeadlineExceeded"' "$work/driver.log" && [ "$ms" -lt 4000 ] && [ $rc != 0 ]; then
        ok "grpc-timeout 500m on a slow upload: DEADLINE_EXCEEDED, upload stopped after $ms ms (curl rc $rc)"
    else
        fail "grpc-timeout 500m on a slow upload: curl rc $rc after $ms ms; driver log: $(grep -c DeadlineExceeded "$work/driver.log") DEADLINE_EXCEEDED"
    fi
else
    skip "grpc-timeout 500m (nghttp2 transport only)"
fi

# Not HTTP/2: the connection is closed, and the server stays up.
if /usr/bin/python3 - "$S" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
try:
    while s.recv(4096):
        pass
except ConnectionResetError:
    pass
PY
then ok "an HTTP/1.1 request: connection closed"
else fail "an HTTP/1.1 request: connection not closed within 5 s"; fi
call "Probe after all that" 200 0 "" /csi.v1.Identity/Probe 0000000000 "${G[@]}"

# Priorities: the loop that answers the fast methods runs at nice -10 (root may raise it),
# the workers of the slow calls (and the tools they fork) at the process's own.
if [ "$TRANSPORT" = nghttp2 ]; then
    call "a slow call (DeleteVolume of an unknown volume: OK) starts a worker" 200 0 "" /csi.v1.Controller/DeleteVolume 00000000040a02766f "${G[@]}"
    nice_of() { for t in /proc/$pid/task/*; do [ "$(cat "$t/comm")" = "$1" ] && awk '{print $19}' "$t/stat"; done | sort -u | tr '\n' ' '; }
    loop=$(nice_of grpc-loop) workers=$(nice_of grpc-worker) want=-10
    [ "$(id -u)" = 0 ] || want=0
    if [ "$loop" = "$want " ] && [ "$workers" = "0 " ]; then
        ok "thread priorities: grpc-loop nice $loop, grpc-worker nice $workers"
    else
        fail "thread priorities: grpc-loop nice '$loop' (want $want), grpc-worker nice '$workers' (want 0)"
    fi
else
    skip "thread priorities (nghttp2 transport only)"
fi

# SIGTERM while a client holds an idle HTTP/2 connection: exit at once, socket removed.
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0")
time.sleep(30)' "$S" &
holder=$!
sleep 0.5
t0=$(date +%s%N)
kill -TERM "$pid"
for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
if kill -0 "$pid" 2>/dev/null; then fail "SIGTERM with an idle connection: still running after $ms ms"
elif [ -e "$S" ]; then fail "SIGTERM: exited after $ms ms but left $S"
else ok "SIGTERM with an idle connection: exit after $ms ms, socket removed"; fi
wait "$pid"; rc=$?
pid=
kill "$holder" 2>/dev/null
# An ASan+UBSan build reports leaks and undefined behaviour at exit.
if [ $rc = 0 ] && ! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:' "$work/driver.log"; then
    ok "exit status 0, no sanitizer report"
else
    fail "exit status $rc; $(grep -m3 -E 'AddressSanitizer|LeakSanitizer|runtime error:' "$work/driver.log")"
fi

# Hostile clients (attack-h2.py: floods, stalls, too many streams and connections; about
# 20 s): its checks count here, its cost numbers are in the log.
# The HTTP servers (metrics, webhooks over HTTP and HTTPS) under slow and numerous
# clients: attack-http.py, about 20 s, whichever the gRPC transport. Both attack scripts
# run at once (each its own driver; they mostly wait for the servers' timeouts).
/usr/bin/python3 "$(dirname "$0")/attack-http.py" "$DRIVER" >"$work/attack-http.log" 2>&1 &
http_pid=$!
if [ "$TRANSPORT" = nghttp2 ]; then
    /usr/bin/python3 "$(dirname "$0")/attack-h2.py" "$DRIVER" >"$work/attack.log" 2>&1
    grep -E '^(ok|FAIL|#) ' "$work/attack.log" | grep -v '^# [EWI][0-9]'
    passed=$((passed + $(grep -c '^ok ' "$work/attack.log")))
    failed=$((failed + $(grep -c '^FAIL ' "$work/attack.log")))
    if ! tail -1 "$work/attack.log" | grep -q ' passed, '; then
        fail "attack-h2.py did not finish: $(tail -3 "$work/attack.log")"
    fi
else
    skip "hostile HTTP/2 clients (nghttp2 transport only)"
fi
wait "$http_pid"
grep -E '^(ok|FAIL|SKIP|#) ' "$work/attack-http.log" | grep -v '^# [EWI][0-9]'
passed=$((passed + $(grep -c '^ok ' "$work/attack-http.log")))
failed=$((failed + $(grep -c '^FAIL ' "$work/attack-http.log")))
skipped=$((skipped + $(grep -c '^SKIP ' "$work/attack-http.log")))
if ! tail -1 "$work/attack-http.log" | grep -q ' passed, '; then
    fail "attack-http.py did not finish: $(tail -3 "$work/attack-http.log")"
fi
echo "$passed passed, $failed failed${skipped:+, $skipped skipped}"
[ $failed = 0 ]
