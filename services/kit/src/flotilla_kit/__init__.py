"""Flotilla service kit: what every Flotilla service is built from."""

import os as _os

# prometheus-client in multiprocess mode writes a file per metric as soon as a module defines
# one: the directory must exist before any kit module is imported, in every command (a
# `migrate` init container starts with an empty /tmp). `serve` wipes it at start.
if _multiprocess_dir := _os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _os.makedirs(_multiprocess_dir, exist_ok=True)
