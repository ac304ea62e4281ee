"""A PBT trial for the katib-local tests, with the command line of Katib's simple-pbt trial.

    python pbt_trial.py --lr LR [--epochs N] --checkpoint DIR

It resumes from DIR/training.ckpt (JSON: the epochs trained, the accuracy reached, and one token
per run of every trial in its lineage), trains --epochs more (the accuracy rises fastest when lr
is near 0.01), appends a token of this run to the lineage, writes the checkpoint back, and prints
`Validation-accuracy=...` for Katib's StdOut collector. So a child's checkpoint tells the tests
which run it was copied from.
"""

import argparse
import json
import math
import os
import uuid

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, required=True)
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--checkpoint", required=True)
args = parser.parse_args()

os.makedirs(args.checkpoint, exist_ok=True)
path = os.path.join(args.checkpoint, "training.ckpt")
state = {"epochs": 0, "accuracy": 0.0, "lineage": []}
if os.path.exists(path):
    with open(path) as f:
        state = json.load(f)
    print(f"resumed at epoch {state['epochs']}")
rate = 0.05 * math.exp(-((math.log10(args.lr) + 2) ** 2))
for _ in range(args.epochs):
    state["accuracy"] += rate * (1 - state["accuracy"])
state["epochs"] += args.epochs
state["lineage"].append(uuid.uuid4().hex)
with open(path, "w") as f:
    json.dump(state, f)
print(f"epoch {state['epochs']}:\nlr={args.lr:.4f}\nValidation-accuracy={state['accuracy']:.4f}")
