"""``python -m bench.emulator``: the emulator's own CLI, with Nagle's algorithm off on its sockets.

The emulator writes a response's headers and its body in two ``send`` calls. With Nagle's algorithm
on, the body waits for the client to acknowledge the headers, and Linux delays that acknowledgement by
up to 40 ms: every small answer (a job's tasks) then takes about 44 ms on loopback instead of about
2 ms. No real service behaves like that, and it would be charged to every request of the baseline, so
the benchmark switches Nagle off (``TCP_NODELAY``, what ``disable_nagle_algorithm`` does in
``socketserver``) and otherwise runs the emulator exactly as ``ams-emulator`` does.
"""

from __future__ import annotations

import sys

from exporter.emulator import server
from exporter.emulator.__main__ import main

if __name__ == "__main__":
    server._Handler.disable_nagle_algorithm = True
    sys.exit(main(sys.argv[1:]))
