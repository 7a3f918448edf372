import sys

from lab.matrix.run import main

sys.exit(main(sys.argv[1:]))
