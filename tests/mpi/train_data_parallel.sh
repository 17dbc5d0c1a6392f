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

# Stopped at step 30 on 4 ranks, resumed on 2 (keeping the checkpoint's 4 slices) and in one
# process: the same rows as the run that did not stop.
run 4 "$optreg" train mlp.yaml --out resumed --steps 30 > stop.log 2>&1 || { cat stop.log; fail "stopping at 30"; }
cp -r resumed resumed1
run 2 "$optreg" train mlp.yaml --out resumed --resume resumed/checkpoint.optreg > resume.log 2>&1 ||
  { cat resume.log; fail "resuming on 2 ranks"; }
cmp <(rows one/metrics.csv) <(rows resumed/metrics.csv) || fail "resumed on 2 ranks, the metrics differ"
"$optreg" train mlp.yaml --out resumed1 --resume resumed1/checkpoint.optreg > plain.log 2>&1 &&
  fail "a whole-batch resume of a checkpoint of 4 slices was taken"
grep -q "it was trained data-parallel, each batch cut into 4 slices: resume it with --slices 4" plain.log ||
  { cat plain.log; fail "the message of a whole-batch resume of a sliced checkpoint"; }
"$optreg" train mlp.yaml --out resumed1 --slices 4 --resume resumed1/checkpoint.optreg > plain.log 2>&1 ||
  { cat plain.log; fail "a one-process resume of a sharded checkpoint"; }
cmp <(rows one/metrics.csv) <(rows resumed1/metrics.csv) || fail "resumed in one process, the metrics differ"
# A checkpoint of whole batches continues on several ranks only with the slices given.
"$optreg" train mlp.yaml --out whole --steps 20 > whole.log 2>&1 || { cat whole.log; fail "a whole-batch run"; }
run 2 "$optreg" train mlp.yaml --out whole --resume whole/checkpoint.optreg > whole.log 2>&1 &&
  fail "a checkpoint of whole batches was resumed on 2 ranks without --slices"
[ "$(grep -c "it was trained on whole batches: give --slices N" whole.log)" -eq 1 ] ||
  { cat whole.log; fail "the refusal of a whole-batch checkpoint, once"; }
grep -q "MPI_ABORT" whole.log && { cat whole.log; fail "a refusal on every rank aborted the job"; }
run 2 "$optreg" train mlp.yaml --out whole --slices 2 --resume whole/checkpoint.optreg > whole.log 2>&1 ||
  { cat whole.log; fail "a checkpoint of whole batches resumed on 2 ranks with --slices 2"; }

# Slices of unequal size (50 examples in 4 slices): the same rows in one process and on 2 ranks.
sed -e 's/batch_size: 48/batch_size: 50/' -e 's/steps: 60/steps: 20/' mlp.yaml > odd.yaml
"$optreg" train odd.yaml --slices 4 --out odd1 > odd1.log 2>&1 || { cat odd1.log; fail "unequal slices, one process"; }
run 2 "$optreg" train odd.yaml --slices 4 --out odd2 > odd2.log 2>&1 || { cat odd2.log; fail "unequal slices, 2 ranks"; }
cmp <(rows odd1/metrics.csv) <(rows odd2/metrics.csv) || fail "unequal slices: 2 ranks' metrics differ"

# Refusals: on every rank alike, printed once, naming the place.
run 3 "$optreg" train mlp.yaml --slices 4 --out bad > bad.log 2>&1 && fail "--slices 4 on 3 ranks was taken"
[ "$(grep -c -- "--slices 4 is not a multiple of the 3 ranks" bad.log)" -eq 1 ] || { cat bad.log; fail "slices message"; }
printf 'problem: {name: mlp, hidden: [16]}\ntrain: {steps: 4, batch_size: 8}\noptimizer: {name: lbfgs, lr: 0.1}\n' > lbfgs.yaml
run 2 "$optreg" train lbfgs.yaml --out bad > lbfgs.log 2>&1 && fail "lbfgs was taken"
[ "$(grep -c "lbfgs.yaml:3:.*cannot train data-parallel: optimizer 'lbfgs' is stepped with a closure" lbfgs.log)" -eq 1 ] ||
  { cat lbfgs.log; fail "the closure refusal, once"; }
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
# A run that cannot train data-parallel is refused before the first run trains.
printf '  - {label: Clipped, optimizer: {name: sgd, lr: 0.1}, clip: {max_norm: 1.0}}\n' > clip_run.yaml
cat cmp.yaml clip_run.yaml > cmpbad.yaml
run 2 "$optreg" compare cmpbad.yaml --out cmpbad > cmpbad.log 2>&1 && fail "a compare with a clipped run was taken"
grep -q "run 'Clipped' cannot train data-parallel: clipping" cmpbad.log || { cat cmpbad.log; fail "compare refusal"; }
[ -e cmpbad/compare.csv ] && fail "a run trained before the refusal"
echo "data-parallel train and compare: the same metrics on 1, 2 and 4 ranks, resumed across world sizes"
