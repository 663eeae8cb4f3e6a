"""Front ends: the ``dpl`` command line and the ``dpl-tui`` Textual app."""
