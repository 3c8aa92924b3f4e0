import sys

from ecgaug.cli import main

sys.exit(main())
