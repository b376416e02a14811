"""The web monitor served by `prodmanager serve` at `/`: pages (`routes`), sign-in and CSRF
(`session`), display filters (`format`), Jinja2 templates and vendored static files."""
