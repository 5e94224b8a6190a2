"""What each command does, as Python functions that return result objects: the CLI and a
notebook call the same ones, and writing files is a separate step (``write_*``)."""
