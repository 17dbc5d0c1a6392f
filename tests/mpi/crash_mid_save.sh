#!/usr/bin/env bash
# A sharded save killed at any point (SIGKILL, every rank at once) leaves a checkpoint that
# loads, on one rank, with exactly the state of the last save that completed.
# Usage: crash_mid_save.sh DRIVER DIR MPIRUN
set -uo pipefail
driver=$1 dir=$2 mpirun=$3
rm -rf "$dir" && mkdir -p "$dir"
path=$dir/run.ckpt
verified=0
for delay in 0.05 0.2 0.45 0.8 1.3; do
  setsid "$mpirun" --oversubscribe -np 2 "$driver" saveloop "$path" > "$dir/loop.log" 2>&1 &
  launcher=$!
  for _ in $(seq 1 600); do
    grep -q "first save done" "$dir/loop.log" && break
    sleep 0.05
  done
  sleep "$delay"
  pkill -9 -f -- "$driver saveloop $path"
  kill -9 -- "-$launcher" 2> /dev/null
  wait "$launcher" 2> /dev/null
  if ! grep -q "first save done" "$dir/loop.log"; then
    echo "FAIL: the save loop did not save"; cat "$dir/loop.log"; exit 1
  fi
  if ! "$mpirun" --oversubscribe -np 1 "$driver" verify "$path"; then
    echo "FAIL: after a kill $delay s into the loop, the checkpoint does not load as saved"; exit 1
  fi
  verified=$((verified + 1))
done
echo "crash mid-save: $verified kills, the checkpoint loaded exactly each time"
