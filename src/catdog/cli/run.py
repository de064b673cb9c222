"""Placeholder until this command group lands."""


def register(subparsers) -> None:
    pass
