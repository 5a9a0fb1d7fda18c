"""Subcommands of `python -m medim`. Each module exposes `add_parser(subparsers)` that sets `func`.

New commands register by adding their module name to COMMANDS; modules are imported lazily so that
`python -m medim --help` stays fast.
"""

COMMANDS = {
    "generate": "medim.commands.generate",
    "info": "medim.commands.info",
    "init-random": "medim.commands.init_random",
    "convert-official": "medim.commands.convert_official",
    "evaluate": "medim.commands.evaluate",
    "synthesize": "medim.commands.synthesize",
}
