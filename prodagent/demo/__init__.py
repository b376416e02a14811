"""The main job: a complete production on the embedded defaults, and the stack it runs on."""
