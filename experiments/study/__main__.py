import sys

from experiments.study.cli import main

sys.exit(main())
