"""The `curfew` subcommands, one module each: each has `register(subparsers)` which adds its
parser and sets `handler` (args -> exit code). `probe.cli` lists the modules."""
