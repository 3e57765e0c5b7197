"""The only code that reads the whole config: parts by name, assembled into agents and updates."""
