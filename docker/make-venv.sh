#!/bin/sh
# The virtual environment of one image: the project with the given extras
# (e.g. "[emulator]"), installed with PIP_OPTIONS, then pip itself removed so
# the final images carry no installer.
set -eu
python3 -m venv /opt/venv
# shellcheck disable=SC2086 # PIP_OPTIONS holds several options
/opt/venv/bin/pip install ${PIP_OPTIONS:-} ".${1:-}"
/opt/venv/bin/pip uninstall --yes pip
