"""A NAS trial for the katib-local tests: reads its assignments the way Katib's trial programs do
(`text.replace("'", '"')`, then JSON) and prints a score in Katib's StdOut format.

    python nas_trial.py --architecture A --nn_config C             (enas: prints accuracy=...)
    python nas_trial.py --algorithm-settings S --search-space P --num-layers N   (darts: prints Best-Genotype=...)
"""

import argparse
import json
import sys


def katib(text):
    return json.loads(text.replace("'", '"'))


parser = argparse.ArgumentParser()
for flag in ("--architecture", "--nn_config", "--algorithm-settings", "--search-space", "--num-layers"):
    parser.add_argument(flag)
args = parser.parse_args()
if args.architecture is not None:
    architecture, config = katib(args.architecture), katib(args.nn_config)
    assert isinstance(architecture, list) and len(architecture) == config["num_layers"], architecture
    ops = [config["embedding"][str(row[0])]["opt_params"] for row in architecture]
    skips = sum(sum(row[1:]) for row in architecture)
    print(f"accuracy={sum(int(p.get('units', 0)) for p in ops) / 100 - 0.01 * skips:.4f}")
else:
    settings, primitives = katib(args.algorithm_settings), katib(args.search_space)
    assert int(settings["num_epochs"]) >= 1 and float(settings["w_lr"]) > 0 and int(args.num_layers) >= 1
    genotype = f"Genotype(normal=[[('{primitives[0]}',0)]],normal_concat=range(2,{2 + int(settings['num_nodes'])}))"
    print(f"Best-Genotype={genotype}")
sys.exit(0)
