"""python -m seqtrade == the seqtrade command."""

from .cli import console_main

console_main()
