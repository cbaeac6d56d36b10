"""Fixtures for a throwaway OpenLDAP server: AD/Lync schema subset, config, LDIF generator."""
