#!/usr/bin/python3
"""paramd's PyTorch reference: the Fashion-MNIST MLP of scripts/bench in PyTorch.

The same model (MLP 784-H1-..-10, ReLU, He-uniform weights, zero biases), data
(the IDX files of Debian's dataset-fashion-mnist, pixels scaled to [0, 1],
reshuffled every epoch), global batch, optimizer (SGD with momentum, constant
learning rate: scripts/bench runs paramd with optimizer.schedule.type=constant)
and evaluation (loss and accuracy on the 10000 test images after every epoch)
as paramd's conf/fmnist-mlp-serial.yaml. --world 1 is one process; --world W
is synchronous data parallelism with DistributedDataParallel over gloo, each
process one thread, a strided 1/W of the training set and --batch examples per
step (so the global batch is W * --batch, as in paramd's sync mode).

Time per epoch is measured as paramd's metrics.jsonl measures it: the wall
clock from the end of the evaluation before the first update to the end of
the evaluation after the last epoch, divided by the epochs (data loading and
process start are outside it; the evaluations after each epoch are inside).

Prints one JSON object per evaluation on stdout (epoch 0 first):
  {"ref": "torch", "world": W, "epoch": e, "wall_s": t, "test_acc": a, "test_loss": l}
and at the end {"ref": "torch", "world": W, "s_per_epoch": s, "test_acc": a}.

Without PyTorch (it needs Debian's python3-torch: run it with /usr/bin/python3)
it prints one line on stderr and exits with status 3.
"""
import argparse
import gzip
import json
import os
import socket
import sys
import time

try:
    import numpy as np
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    import torch.nn as nn
except ImportError as e:   # one line, no traceback: scripts/bench reports it
    print("torch_ref: PyTorch is not available (%s); install python3-torch" % e, file=sys.stderr)
    sys.exit(3)

DATA = "/usr/share/datasets/fashion-mnist"


def idx_images(path):
    raw = gzip.open(path).read()
    return np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0


def idx_labels(path):
    return np.frombuffer(gzip.open(path).read(), np.uint8, offset=8).astype(np.int64)


def mlp(hidden, classes=10, features=784):
    layers, prev = [], features
    for h in hidden + [classes]:
        lin = nn.Linear(prev, h)
        bound = (6.0 / prev) ** 0.5   # He uniform, as paramd's pd_model_init
        nn.init.uniform_(lin.weight, -bound, bound)
        nn.init.zeros_(lin.bias)
        layers += [lin, nn.ReLU()]
        prev = h
    return nn.Sequential(*layers[:-1])


def evaluate(model, xt, yt, lossf):
    with torch.no_grad():
        out = model(xt)
        return (out.argmax(1) == yt).float().mean().item(), lossf(out, yt).item()


def train(rank, args):
    world = args.world
    if world > 1:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(args.port)
        dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    d = args.data
    x = torch.from_numpy(idx_images(os.path.join(d, "train-images-idx3-ubyte.gz"))[rank::world].copy())
    y = torch.from_numpy(idx_labels(os.path.join(d, "train-labels-idx1-ubyte.gz"))[rank::world].copy())
    xt = torch.from_numpy(idx_images(os.path.join(d, "t10k-images-idx3-ubyte.gz")))
    yt = torch.from_numpy(idx_labels(os.path.join(d, "t10k-labels-idx1-ubyte.gz")))
    model = mlp(args.hidden)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    lossf = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed + rank)

    def row(epoch, t0):
        acc, loss = evaluate(model, xt, yt, lossf)
        wall = time.perf_counter() - t0
        print(json.dumps({"ref": "torch", "world": world, "epoch": epoch, "wall_s": round(wall, 4),
                          "test_acc": round(acc, 4), "test_loss": round(loss, 5)}), flush=True)
        return wall, acc

    t0 = time.perf_counter()
    if rank == 0:
        row(0, t0)
    if world > 1:
        dist.barrier()
    t0 = time.perf_counter()   # the epoch-0 row's wall is 0 by definition
    wall = acc = 0.0
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(len(x), generator=gen)
        # paramd takes every example each epoch; its last batch may be short.
        for i in range(0, len(x), args.batch):
            idx = perm[i:i + args.batch]
            opt.zero_grad(set_to_none=True)
            lossf(model(x[idx]), y[idx]).backward()
            opt.step()
        if rank == 0:
            wall, acc = row(epoch, t0)
        if world > 1:
            dist.barrier()   # the other ranks wait for rank 0's evaluation, like paramd's workers
    if rank == 0:
        print(json.dumps({"ref": "torch", "world": world, "s_per_epoch": round(wall / args.epochs, 4),
                          "test_acc": round(acc, 4)}), flush=True)
    if world > 1:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--world", type=int, default=1, help="processes (DDP over gloo when > 1)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=64, help="examples per process and step")
    p.add_argument("--hidden", default="256,128,100", help="hidden widths, comma-separated")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", default=DATA, help="directory of the Fashion-MNIST IDX files")
    args = p.parse_args()
    args.hidden = [int(h) for h in args.hidden.split(",") if h]
    if args.world < 1 or args.epochs < 1 or args.batch < 1 or not args.hidden:
        p.error("--world, --epochs, --batch must be >= 1 and --hidden non-empty")
    if not os.path.isfile(os.path.join(args.data, "t10k-images-idx3-ubyte.gz")):
        print("torch_ref: no Fashion-MNIST in %s (Debian package dataset-fashion-mnist)" % args.data,
              file=sys.stderr)
        return 3
    if args.world == 1:
        train(0, args)
    else:
        args.port = free_port()
        mp.spawn(train, args=(args,), nprocs=args.world)
    return 0


if __name__ == "__main__":
    sys.exit(main())
