"""Stands in for Katib's MNIST trainer: same flags, Katib-style metric lines, no training."""

import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--momentum", type=float, required=True)
args = parser.parse_args()

print(f"training with lr={args.lr} momentum={args.momentum} batch-size={args.batch_size}")
for epoch in range(1, args.epochs + 1):
    loss = 0.5 / (1 + 20 * args.lr * args.momentum * epoch)
    print(f"Train Epoch: {epoch} [0/60000 (0%)]\tloss={loss:.4f}")
    print(f"{{metricName: accuracy, metricValue: {1 - loss / 2:.4f}}};{{metricName: loss, metricValue: {loss:.4f}}}")
    print(f"accuracy={1 - loss / 2:.4f}")
