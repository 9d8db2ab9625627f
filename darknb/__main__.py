import sys

from darknb.cli import main

sys.exit(main())
