#!/bin/bash
# usage: scripts/bench-alternating.sh N SIZE RUNS [json|msgpack]
# Runs the raw server, the plain hub, the chat hub (Core) and the chat hub (classic) in turn,
# RUNS times, one server at a time (loadgen fanout, N receivers, SIZE-byte messages), and prints
# each one's median server CPU per delivery and its ratio to the raw server's. Build first:
#   cargo build --release -p hubbub-cli -p hubbub-bench
n=$1; size=$2; runs=$3; proto=${4:-json}
B="${CARGO_TARGET_DIR:-target}/release"
msgs=$((200000 / n)); [ $msgs -gt 20000 ] && msgs=20000; [ $msgs -lt 20 ] && msgs=20
for r in $(seq $runs); do
  for srv in raw plain chat classic; do
    port=$((7000 + RANDOM % 1000))
    case $srv in
      raw) $B/raw-broadcast --listen 127.0.0.1:$port >/dev/null & path=/ws; mode=raw;;
      plain) $B/plain-hub --listen 127.0.0.1:$port >/dev/null 2>&1 & path=/chathub; mode=signalr;;
      chat) $B/hubbub hub --listen 127.0.0.1:$port --history memory --max-messages-per-second 1000000 --max-connections 30000 --max-tcp-connections-per-address 30000 2>/dev/null & path=/chathub; mode=signalr;;
      classic) $B/hubbub hub --listen 127.0.0.1:$port --history memory --max-messages-per-second 1000000 --max-connections 30000 --max-tcp-connections-per-address 30000 2>/dev/null & path=/signalr; mode=classic;;
    esac
    HP=$!
    for i in $(seq 100); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
    timeout 120 $B/loadgen fanout --url ws://127.0.0.1:$port$path --mode $mode --protocol $proto --receivers $n --messages $msgs --size $size --server-pid $HP | python3 -c "import json,sys; d=json.load(sys.stdin); print('$srv', d['serverCpuMicrosPerDelivery'], d['lost'])"
    kill $HP; wait $HP 2>/dev/null
  done
done | python3 -c "
import sys,statistics,collections
d=collections.defaultdict(list)
for l in sys.stdin:
    s,v,lost=l.split(); d[s].append(float(v))
raw=statistics.median(d['raw'])
for s in ['raw','plain','chat','classic']:
    m=statistics.median(d[s]); print(f'{s:8} median {m:.2f} us  ({m/raw:.2f}x raw)  runs', ' '.join(f'{x:.2f}' for x in d[s]))
"
