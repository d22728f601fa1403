#!/bin/bash
# `make run` as the README starts it (SQLite, the filesystem broker, its two workers), in a fresh
# var folder of its own: one API upload of 16 photos, then the seconds until the worker has
# classified all 16 (the API's list, asked every 0.1 s); then the seconds from a SIGTERM to make (as
# Ctrl-C stops it) until all its processes are gone. Usage: bench/make_run.sh [PORT]
set -eu
port=${1:-8141}
var=$(mktemp -d)
B=http://127.0.0.1:$port
CAKESITE_VAR_DIR=$var setsid make run PORT=$port > "$var/run.log" 2>&1 &
session=$!
trap 'kill -TERM $(pgrep -f "make run PORT=$port") 2>/dev/null; sleep 3; rm -rf "$var"' EXIT
for _ in $(seq 120); do curl -sf -o /dev/null $B/ && break; sleep 1; done
sleep 8  # the workers' start
T=$(curl -s -X POST $B/api/account/ -d username=bench -d password='kue-lapis-2026-x' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
files=$(find tests/photos -name '*.jpg' | sort | head -16 | sed 's/^/-F files=@/' | tr '\n' ' ')
start=$(date +%s.%N)
curl -s -H "Authorization: Token $T" $files $B/api/photos/ > /dev/null
until [ "$(curl -s -H "Authorization: Token $T" "$B/api/photos/?status=done" |
           python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')" -ge 16 ]; do sleep 0.1; done
end=$(date +%s.%N)
echo "RESULT make_run_16_photos_s=$(python3 -c "print(round($end - $start, 1))")"
sleep 3  # idle
stop=$(date +%s.%N)
kill -TERM $(pgrep -f "make run PORT=$port")
while pgrep -s "$session" > /dev/null; do sleep 0.05; done
echo "RESULT make_run_stop_s=$(python3 -c "print(round($(date +%s.%N) - $stop, 1))")"
