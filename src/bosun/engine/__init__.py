"""The engine: containers, images, exec, logs, events, restart policies and per-container
monitors (shims). A plain Python library; the daemon (`bosun daemon`) is one host of it and the
API layer a thin wire over it. Nothing here knows HTTP."""
