"""The `sip2uc` command-line tool (entry point: `sip2uc.cli.main:main`)."""
