import sys

from csc_fetcher.cli import main

sys.exit(main())
