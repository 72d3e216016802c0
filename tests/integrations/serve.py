"""Run a test server in a child process (so a test can freeze it with SIGSTOP).

``python serve.py fault|llm`` prints the server's URL on one line, then serves until its
standard input closes.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from faultserver import FaultServer
from integrations.llm_standin import LlmStandIn


def main() -> None:
    server = FaultServer() if sys.argv[1] == "fault" else LlmStandIn()
    with server:
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
