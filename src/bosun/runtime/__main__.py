import sys

from bosun.runtime.cli import main

sys.exit(main())
