"""Checks of a ModelPack artifact with tools modelcar did not write (tests/modelpack.rs,
e2e/modelpack.sh), run in the modelpack-client venv (tests/fixtures/modelpack-client-requirements.txt).

    modelpack_check.py pull REF DEST        modelpack-client 0.1.0 pulls REF (plain HTTP) into
                                            DEST; prints {"files": [...], "config": {...}} as JSON
    modelpack_check.py validate SCHEMA FILE  validates the JSON document FILE against the JSON
                                            schema SCHEMA (draft 2020-12, date-time checked as
                                            RFC 3339); prints "valid" or the errors, exit 1

modelpack-client itself validates the config against the specification's schema when it pulls.
"""

import json
import sys
from datetime import datetime
from pathlib import Path


def pull(reference: str, destination: str) -> None:
    from modelpack_client import ModelPackClient

    result = ModelPackClient(insecure=True).pull(reference, destination)
    root = Path(destination).resolve()
    print(
        json.dumps(
            {
                "files": sorted(str(Path(f).resolve().relative_to(root)) for f in result.files),
                "config": result.config,
            }
        )
    )


def validate(schema_path: str, document_path: str) -> None:
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("date-time", raises=ValueError)
    def _date_time(value: object) -> bool:
        # RFC 3339 section 5.6: a full date, "T", a time and an offset (Z or +hh:mm).
        if not isinstance(value, str):
            return True
        if len(value) < 20 or value[10] not in "Tt" or not (value.endswith(("Z", "z")) or value[-6] in "+-"):
            raise ValueError(f"not an RFC 3339 date-time: {value!r}")
        datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
        return True

    schema = json.loads(Path(schema_path).read_text())
    document = json.loads(Path(document_path).read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=checker)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        for e in errors:
            print(f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
        sys.exit(1)
    print("valid")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"pull": pull, "validate": validate}[command](*args)
