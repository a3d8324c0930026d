"""One module per command, each returning a result that carries its data and its exit code.

A command never imports another command: what two share lives in mlstack.project or below.
"""
