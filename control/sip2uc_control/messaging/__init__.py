"""Short messages (SIP MESSAGE, RFC 3428): the checks a text passes, who it goes to, and the
numbered history a watch resumes from. See docs/handset-features.md, "Short messages"."""
