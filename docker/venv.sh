#!/bin/sh
# Builds an image's runtime virtualenv: docker/venv.sh VENV suggestion|earlystopping
#
# Run from the project root (the Dockerfiles run it in their build stage). The virtualenv has no
# pip, setuptools or wheel (pip installs into it from outside), no download or build caches, and
# no test suites of the installed packages; every module is compiled to bytecode here, since the
# container's root filesystem is read-only. Each image gets the project without dependencies,
# then only the dependencies its servers import, at the versions pyproject.toml pins:
#   suggestion     all but the Kubernetes client (only SetTrialStatus, an early-stopping RPC, uses it)
#   earlystopping  gRPC, protobuf, prometheus-client and the Kubernetes client (no numpy, scipy,
#                  Optuna or scikit-learn)
set -eu
venv=$1
kind=$2

# The pinned dependencies of pyproject.toml: "only NAME..." keeps those, "except NAME..." drops them.
pinned() {
    python - "$@" <<'PY'
import re, sys, tomllib
rule, names = sys.argv[1], set(sys.argv[2:])
for dependency in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if (re.split(r"[<>=!~ ;\[]", dependency, maxsplit=1)[0] in names) == (rule == "only"):
        print(dependency.replace(" ", ""))
PY
}

case "$kind" in
suggestion) dependencies=$(pinned except kubernetes) ;;
earlystopping) dependencies=$(pinned only grpcio grpcio-health-checking grpcio-reflection protobuf prometheus-client kubernetes) ;;
*)
    echo "usage: $0 VENV suggestion|earlystopping" >&2
    exit 2
    ;;
esac
python -m venv --without-pip "$venv"
install="python -m pip --python $venv/bin/python install --no-cache-dir --disable-pip-version-check --no-warn-script-location"
$install --no-deps .
# shellcheck disable=SC2086 # one argument per requirement
$install $dependencies
find "$venv/lib" -depth -type d -name tests -path "*/site-packages/*" -exec rm -rf {} +
