"""Stands in for Katib's MXNet MNIST trainer (the hyperband example): same flags, one
`Validation-accuracy=` and `Train-accuracy=` line per epoch, no training."""

import argparse

parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--num-layers", type=int, required=True)
parser.add_argument("--optimizer", required=True)
parser.add_argument("--num-epochs", type=int, required=True)
args = parser.parse_args()

skill = {"adam": 0.9, "sgd": 0.8, "ftrl": 0.7}[args.optimizer] - abs(args.lr - 0.02) - 0.01 * abs(args.num_layers - 3)
for epoch in range(1, args.num_epochs + 1):
    accuracy = skill * (1 - 0.5 ** epoch)
    print(f"Epoch[{epoch - 1}] Train-accuracy={accuracy + 0.01:.4f}")
    print(f"Epoch[{epoch - 1}] Validation-accuracy={accuracy:.4f}")
