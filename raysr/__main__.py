import sys

from raysr.cli import main

sys.exit(main())
