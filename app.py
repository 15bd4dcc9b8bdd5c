"""Start the 記事QA chat page: `python app.py [--host 127.0.0.1] [--port 7860]` (same as `rag serve`)."""

import sys

from rag.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
