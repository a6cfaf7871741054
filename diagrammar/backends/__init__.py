"""Backends: maps from the typed diagram (diagrammar.ir) to figures, modules and cost reports."""
