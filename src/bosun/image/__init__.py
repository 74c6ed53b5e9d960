"""bosun's image layer: references, a content-addressed blob store, image metadata in
SQLite, manifests, safe layer unpacking and overlayfs snapshots (what containerd's content
store and snapshotter are to Docker). A library the engine calls; it knows nothing of
containers' processes or of HTTP clients above it."""
