"""The server processes' launcher: the `sip2uc up` and `sip2uc sidecar` commands.

They live beside the servers, not in the client SDK: the `sip2uc` command (from the client
package) finds them through the `sip2uc.cli` entry point group when the servers are installed.
"""
