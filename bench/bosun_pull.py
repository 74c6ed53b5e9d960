"""The bosun contender of bench/image.py: pull one image into a fresh ImageStore.

    python bench/bosun_pull.py ROOT REF

Run as a process of its own, as `docker pull` is one, so its wall time counts what a
`bosun pull` would: interpreter start, imports, the pull. Prints one JSON line:
{"id": image id, "import_s": time to import the store, "pull_s": ImageStore() + pull()}.
Exit status 3: the ImageStore is not available (its module or class is missing).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def main(root: str, ref: str) -> int:
    t0 = time.perf_counter()
    try:
        from bosun.image.store import ImageStore
    except ImportError as e:
        print(f"ImageStore not available: {e}", file=sys.stderr)
        return 3
    t1 = time.perf_counter()
    store = ImageStore(root)
    try:
        image_id = store.pull(ref)
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()
    t2 = time.perf_counter()
    print(json.dumps({"id": str(image_id), "import_s": t1 - t0, "pull_s": t2 - t1}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
