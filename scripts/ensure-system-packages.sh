#!/usr/bin/env bash
# The system parts the project runs for real and pip cannot install: a Java
# runtime (the KCL daemon), PostgreSQL's server binaries (the warehouse) and
# Prometheus with promtool (metrics, alert rules) and its Pushgateway (the
# reconciliation's gauges). One script for `make demo`,
# `make test` and CI: what is missing is installed with apt-get when running
# as root (Debian's package names); otherwise each missing part is named in
# one line with the command that installs it, and the script exits 1.
set -euo pipefail

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql-15)
{ command -v prometheus >/dev/null && command -v promtool >/dev/null; } || missing+=(prometheus)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (Debian packages this project runs)" >&2
    export DEBIAN_FRONTEND=noninteractive
    if apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update >/dev/null 2>&1 \
             && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }; then
        exit 0
    fi
    echo "could not install ${missing[*]} with apt-get" >&2
fi

for package in "${missing[@]}"; do
    case "$package" in
        openjdk-17-jre-headless) part="a Java 17 runtime (the KCL daemon)" ;;
        postgresql-15) part="PostgreSQL 15's server (the warehouse)" ;;
        prometheus) part="Prometheus and promtool (metrics, alert rules)" ;;
        prometheus-pushgateway) part="Prometheus' Pushgateway (the reconciliation's gauges)" ;;
    esac
    echo "missing: $part; install it with: sudo apt-get install $package" >&2
done
exit 1
