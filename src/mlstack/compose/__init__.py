"""The stack as a compose file: rendered from the config (render.py), parsed back into the typed
service specs the engine creates (services.py), so the file and what runs cannot drift apart."""
