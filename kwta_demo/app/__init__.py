"""The explorer: its handlers as a plain library (explorer), the Gradio page over it (ui)."""
