"""Built-in analysis plugins (found by name through the ``assay.analyses`` entry points)."""
