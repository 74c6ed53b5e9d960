"""`bosun`: the command line. `bosun daemon` runs the daemon; the docker-compatible client
commands come with the CLI issue — until then the docker CLI drives bosun:
`DOCKER_HOST=unix:///run/bosun/bosun.sock docker run …`."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "daemon":
        from bosun.daemon import main as daemon_main

        return daemon_main(args[1:])
    print("usage: bosun daemon [flags]\n\nThe client commands are not written yet; use the "
          "docker CLI with DOCKER_HOST=unix:///run/bosun/bosun.sock", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
