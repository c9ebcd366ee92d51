#!/usr/bin/env bash
# Runs an aarch64 binary under qemu-user; PIQUANT_QEMU_CPU picks the core (default cortex-a76).
exec qemu-aarch64 -cpu "${PIQUANT_QEMU_CPU:-cortex-a76}" -L /usr/aarch64-linux-gnu "$@"
