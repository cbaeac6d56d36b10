"""`python -m sip2uc.cli`: the same as the `sip2uc` command."""

from sip2uc.cli.main import main

main()
