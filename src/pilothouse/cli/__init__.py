"""The ``pilothouse`` command line: Typer apps, one module per command group.

Commands are thin: they load settings, call a capability package and render
the result with Rich. Errors are printed as ``error:``/``hint:`` lines.
"""
