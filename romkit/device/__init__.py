"""Talking to the phone: transport, BROM/preloader commands, legacy DA session."""
