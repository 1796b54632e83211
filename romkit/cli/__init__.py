"""The thin command-line shell: app.py's COMMANDS table names each command and the module here
whose `register(app)` adds it; a module is imported only when one of its commands runs."""
