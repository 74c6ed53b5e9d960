"""bosun's registry client: the OCI distribution API (pull, push, auth, mirrors)."""
