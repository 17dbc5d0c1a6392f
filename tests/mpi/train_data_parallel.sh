#!/usr/bin/env bash
# `mpirun -np N optreg train|compare`: the same metrics, bit for bit, on 1, 2 and 4 ranks for the
# same --slices, a sharded checkpoint of 4 ranks resumed on 2, and what data-parallel training
# refuses, named where the config says it.
# Usage: train_data_parallel.sh OPTREG MPIRUN DIR
set -uo pipefail
optreg=$1 mpirun=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir" && cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
run() { "$mpirun" --oversubscribe -np "$@"; }
# The metrics without the time column.
rows() { cut -d, -f1-7 "$1"; }

cat > mlp.yaml <<'YAML'
problem: {name: mlp, hidden: [16]}
train: {seed: 2, steps: 60, batch_size: 48, log_every: 10, checkpoint_every: 20}
optimizer: {name: adam, lr: 0.003}
param_groups:
  - {params: "*.bias", lr: 0.001}
YAML
"$optreg" train mlp.yaml --slices 4 --out one > one.log 2>&1 || { cat one.log; fail "one process, --slices 4"; }
run 2 "$optreg" train mlp.yaml --slices 4 --out two > two.log 2>&1 || { cat two.log; fail "2 ranks"; }
run 4 "$optreg" train mlp.yaml --out four > four.log 2>&1 || { cat four.log; fail "4 ranks"; }
[ "$(rows one/metrics.csv | wc -l)" -eq 7 ] || fail "one process wrote $(rows one/metrics.csv | wc -l) rows"
cmp <(rows one/metrics.csv) <(rows two/metrics.csv) || fail "2 ranks' metrics differ from one process's"
cmp <(rows one/metrics.csv) <(rows four/metrics.csv) || fail "4 ranks' metrics differ from one process's"
grep -q "test acc" four.log || fail "rank 0 printed no table"
[ "$(grep -c "^adam " four.log)" -eq 1 ] || fail "the table was printed by more than one rank"
ls four/checkpoint.optreg.shards/*-rank-3-of-4 > /dev/null || fail "no rank file of rank 3"

# Stopped at step 30 on 4 ranks, resumed on 2: the same rows as the run that did not stop.
run 4 "$optreg" train mlp.yaml --out resumed --steps 30 > stop.log 2>&1 || { cat stop.log; fail "stopping at 30"; }
run 2 "$optreg" train mlp.yaml --out resumed --slices 4 --resume resumed/checkpoint.optreg > resume.log 2>&1 ||
  { cat resume.log; fail "resuming on 2 ranks"; }
cmp <(rows one/metrics.csv) <(rows resumed/metrics.csv) || fail "resumed on 2 ranks, the metrics differ"
# A one-process run resumes from it too.
"$optreg" train mlp.yaml --out plain --resume four/checkpoint.optreg > plain.log 2>&1 ||
  { cat plain.log; fail "a one-process resume of a sharded checkpoint"; }

# Refusals: on every rank alike, printed once, naming the place.
run 3 "$optreg" train mlp.yaml --slices 4 --out bad > bad.log 2>&1 && fail "--slices 4 on 3 ranks was taken"
grep -q "optreg: .*--slices 4 is not a multiple of the 3 ranks" bad.log || { cat bad.log; fail "slices message"; }
printf 'problem: {name: mlp, hidden: [16]}\ntrain: {steps: 4, batch_size: 8}\noptimizer: {name: sgd, lr: 0.1}\nclip: {max_norm: 1.0}\n' > clip.yaml
run 2 "$optreg" train clip.yaml --out bad > clip.log 2>&1 && fail "clipping was taken"
grep -q "clip.yaml:4:.*cannot train data-parallel: clipping" clip.log || { cat clip.log; fail "clip message"; }
[ "$(grep -c "cannot train data-parallel" clip.log)" -eq 1 ] || { cat clip.log; fail "the refusal was printed more than once"; }

# compare: every run data-parallel, the CSV rank 0's, the same as one process's.
cat > cmp.yaml <<'YAML'
problem: {name: mlp, hidden: [16]}
train: {seed: 3, steps: 30, batch_size: 32, log_every: 10}
runs:
  - {label: SGD, optimizer: {name: sgd, lr: 0.1, momentum: 0.9}}
  - {label: Lion, optimizer: {name: lion, lr: 0.001}}
YAML
"$optreg" compare cmp.yaml --slices 2 --out cmp1 > cmp1.log 2>&1 || { cat cmp1.log; fail "compare, one process"; }
run 2 "$optreg" compare cmp.yaml --out cmp2 > cmp2.log 2>&1 || { cat cmp2.log; fail "compare, 2 ranks"; }
cmp <(cut -d, -f1-9 cmp1/compare.csv) <(cut -d, -f1-9 cmp2/compare.csv) || fail "compare on 2 ranks differs"
echo "data-parallel train and compare: the same metrics on 1, 2 and 4 ranks, resumed across world sizes"
