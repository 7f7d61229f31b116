import sys

from kernelkeeper.cli import main

sys.exit(main())
