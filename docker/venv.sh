#!/bin/sh
# Builds an image's runtime virtualenv: docker/venv.sh VENV suggestion|earlystopping
#
# Run from the project root (the Dockerfiles run it in their build stage). The virtualenv has no
# pip, setuptools or wheel (pip installs into it from outside), no download or build caches, and
# no test suites of the installed packages; every module is compiled to bytecode here, since the
# container's root filesystem is read-only. The early-stopping image needs only gRPC, protobuf,
# prometheus-client and the Kubernetes client (no numpy, scipy, Optuna or scikit-learn): it gets
# the project without dependencies, then those, at the versions pyproject.toml pins.
set -eu
venv=$1
kind=$2
python -m venv --without-pip "$venv"
install="python -m pip --python $venv/bin/python install --no-cache-dir --disable-pip-version-check --no-warn-script-location"
case "$kind" in
suggestion)
    $install .
    ;;
earlystopping)
    $install --no-deps .
    $install $(python -c '
import re, tomllib
wanted = {"grpcio", "grpcio-health-checking", "grpcio-reflection", "protobuf", "prometheus-client", "kubernetes"}
for dependency in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if re.split(r"[<>=!~ ;\[]", dependency, maxsplit=1)[0] in wanted:
        print(dependency.replace(" ", ""))
')
    ;;
*)
    echo "usage: $0 VENV suggestion|earlystopping" >&2
    exit 2
    ;;
esac
find "$venv/lib" -depth -type d -name tests -path "*/site-packages/*" -exec rm -rf {} +
