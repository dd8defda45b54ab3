from nlbkit.cli import not_built

command = not_built("fetch")
