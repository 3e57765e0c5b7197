"""The only code that reads the whole config: parts by name, assembled into agents, updates and the trainer."""
