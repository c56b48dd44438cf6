import sys

from testserver.server import main

sys.exit(main())
