"""The arx CLI, the sweep spec and the launcher."""
