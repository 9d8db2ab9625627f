"""Reports: readable tables and text, figures, and the interactive frame player.

Reads dicts and JSON (what the stages wrote); may import data/ and models/ to show frames, never
the engine or the study.
"""
