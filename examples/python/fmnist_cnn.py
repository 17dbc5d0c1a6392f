"""Trains a small CNN on Fashion-MNIST in PyTorch with torch.optim.Adam and with optreg's adam,
adamw, lion and adam with int8 state, from the same seed and data order, and prints a table of
test accuracy, optimizer-step time and total time.

    PYTHONPATH=build/python python3 examples/python/fmnist_cnn.py [--epochs 1] [--train-limit N]

The data are the files of Debian's dataset-fashion-mnist package (/usr/share/datasets/fashion-mnist).
"""

import argparse
import gzip
import os
import time

import numpy as np
import torch

import optreg.torch

DATA = "/usr/share/datasets/fashion-mnist"


def idx(name):
    path = os.path.join(DATA, name)
    if not os.path.exists(path):
        raise SystemExit("%s: no such file (Fashion-MNIST comes with the Debian package dataset-fashion-mnist)" % path)
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(limit, images, labels):
    x = torch.from_numpy(idx(images)[:limit].astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(idx(labels)[:limit].astype(np.int64))
    return (x - 0.2860) / 0.3530, y


class CNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = torch.nn.Linear(32 * 7 * 7, 128)
        self.fc2 = torch.nn.Linear(128, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


RUNS = [
    ("torch.optim.Adam", lambda p: torch.optim.Adam(p, lr=1e-3)),
    ("optreg adam", lambda p: optreg.torch.Optimizer(p, "adam", lr=1e-3)),
    ("optreg adamw", lambda p: optreg.torch.Optimizer(p, "adamw", lr=1e-3, weight_decay=1e-2)),
    ("optreg lion", lambda p: optreg.torch.Optimizer(p, "lion", lr=3e-4, weight_decay=1e-2)),
    ("optreg adam int8 state", lambda p: optreg.torch.Optimizer(p, "adam", lr=1e-3, state_dtype="int8")),
]


def run(make, train, test, args):
    torch.manual_seed(args.seed)
    model = CNN()
    opt = make(model.parameters())
    x, y = train
    order = torch.Generator().manual_seed(args.seed)
    step_time = 0.0
    start = time.perf_counter()
    for _ in range(args.epochs):
        perm = torch.randperm(len(x), generator=order)
        for i in range(0, len(x), args.batch_size):
            batch = perm[i:i + args.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            t = time.perf_counter()
            opt.step()
            step_time += time.perf_counter() - t
    total = time.perf_counter() - start
    with torch.no_grad():
        tx, ty = test
        correct = sum((model(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item() for i in range(0, len(tx), 1000))
    return loss.item(), 100.0 * correct / len(tx), step_time, total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--train-limit", type=int, default=60000)
    ap.add_argument("--test-limit", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = load(args.train_limit, "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
    test = load(args.test_limit, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    print("Fashion-MNIST CNN (conv16-conv32-fc128-fc10), %d training images, %d epoch(s), batch %d, seed %d"
          % (len(train[0]), args.epochs, args.batch_size, args.seed))
    print()
    header = "%-24s %11s %9s %11s %9s" % ("run", "train loss", "test acc", "step time", "time")
    print(header)
    print("-" * len(header))
    for label, make in RUNS:
        loss, acc, step_time, total = run(make, train, test, args)
        print("%-24s %11.4f %8.2f%% %9.2f s %7.1f s" % (label, loss, acc, step_time, total), flush=True)


if __name__ == "__main__":
    main()
