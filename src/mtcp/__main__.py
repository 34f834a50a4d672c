import sys

from mtcp.cli import main

sys.exit(main())
