"""Generate the settings table of README.md from ``mpitune.settings.Settings``.

    python docs/settings_table.py            # print the table (Markdown)
    python docs/settings_table.py --write    # replace the table in README.md
    python docs/settings_table.py --check    # exit 1 if README.md's table is out of date

The table sits between the markers ``<!-- settings-table:start -->`` and
``<!-- settings-table:end -->``; everything in it comes from the dataclass fields and their
metadata, so a new or changed setting only needs ``--write``.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

from mpitune.settings import Settings, field_type

START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"
README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _default(field: dataclasses.Field) -> str:
    value = field.default
    if value is None:
        return "none"
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def table() -> str:
    rows = ["| setting | command line | type | default | meaning |",
            "|---|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        kind = field_type(f)
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            flag = f"{flag} / --no-{f.name.replace('_', '-')}"
        kind_name = "one of " + ", ".join(f.metadata["choices"]) if "choices" in \
            f.metadata else kind.__name__
        meaning = f.metadata["help"].replace("%%", "%").replace("|", "\\|")
        rows.append(f"| `{f.name}` | `{flag}` | {kind_name} | {_default(f)} | {meaning} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help="update README.md in place")
    group.add_argument("--check", action="store_true", help="fail if README.md differs")
    args = parser.parse_args()
    text = table()
    if not (args.write or args.check):
        print(text)
        return 0
    readme = README.read_text()
    head, sep, rest = readme.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        sys.stderr.write(f"{README}: markers {START} ... {END} not found\n")
        return 1
    updated = f"{head}{START}\n{text}\n{END}{tail}"
    if args.check:
        if updated != readme:
            sys.stderr.write("README.md's settings table is out of date with "
                             "mpitune/settings.py: run python docs/settings_table.py --write\n")
            return 1
        print("README.md settings table is up to date")
        return 0
    README.write_text(updated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
