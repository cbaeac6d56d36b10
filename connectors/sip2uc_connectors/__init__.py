"""Bridges that carry sip2uc presence to unified-communications platforms and back."""
