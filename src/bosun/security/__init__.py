"""Container hardening defaults that the engine puts into a container's config.json."""
