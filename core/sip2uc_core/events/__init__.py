"""Event-package documents (RFC 6665 bodies) both servers and the presence bridge share: PIDF with
RPID (`pidf`), RFC 4235 dialog-info (`dialog_info`) and RFC 4662 resource-list notifications
(`rlmi`). Pure: documents in, bytes out; untrusted bodies are read with ``defusedxml``.
"""
