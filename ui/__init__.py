"""The Gradio app (`app.py`, run as a script from .venv-ui) and what it shows (`views`)."""
