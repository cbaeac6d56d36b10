"""The sidecar's B2BUA, sans-IO: offer/answer with handsets, dialogs, and the two leg machines.

The asyncio side (``sidecar/``) feeds legs with SIP messages, control-plane commands, relay
events and timer expiries, and carries out the actions they return (``actions.py``).
"""
