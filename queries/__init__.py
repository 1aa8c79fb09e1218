"""The SQL views, one folder per layer (macros, staging, intermediate, marts); no Python lives here.

This file only makes `queries` a package, so the wheel ships the .sql files as its package data
(pyproject.toml `[tool.setuptools.package-data]`); `warehouse.views` finds and applies them.
"""
