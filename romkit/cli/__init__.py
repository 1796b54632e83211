"""The thin command-line shell: every module here with a `register(app)` adds its commands."""
