#!/usr/bin/env python3
"""X-Twilio-Signature as Twilio's own Python library computes and checks it: the reference
that Parley's webhook signature code (src/channels/sms/signature.rs) is tested against.

    python3 tests/support/twilio_sign.py sign  <auth_token> <url> [name=value ...]
    python3 tests/support/twilio_sign.py valid <auth_token> <url> <signature> [name=value ...]

`sign` prints the signature of a POST of the fields to <url> exactly as given (url plus the
fields sorted by name, then value); `valid` prints `true` or `false`, trying <url> with and
without the scheme's default port as twilio's RequestValidator.validate does. A field is split
at its first `=`; a name may repeat. Exit status: 0 when an answer was printed, 2 for bad
usage, 3 when the twilio package is missing.

The twilio package (pinned in scripts/setup.sh) is installed with `pip install --target` into
.cache/python at the repository root; this script puts that directory first on sys.path, so
no environment is needed. PYTHONPATH still works for a twilio installed elsewhere.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".cache", "python"))

USAGE = __doc__.split("\n\n")[1]


class Form(dict):
    """The POST fields, name -> list of values. RequestValidator reads a name's values
    through getlist() (Django's QueryDict interface), so repeated names are signed whole."""

    def getlist(self, name):
        return self[name]


def parse_fields(args):
    form = Form()
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep:
            raise ValueError(f"field {arg!r} is not name=value")
        form.setdefault(name, []).append(value)
    return form


def main(argv):
    command = argv[0] if argv else ""
    needed = {"sign": 2, "valid": 3}.get(command)
    if needed is None or len(argv) - 1 < needed:
        print(USAGE, file=sys.stderr)
        return 2
    try:
        from twilio.request_validator import RequestValidator
    except ImportError as e:
        print(f"twilio_sign: the twilio package is missing ({e}); run scripts/setup.sh",
              file=sys.stderr)
        return 3
    token, url = argv[1], argv[2]
    try:
        form = parse_fields(argv[1 + needed:])
    except ValueError as e:
        print(f"twilio_sign: {e}", file=sys.stderr)
        return 2
    validator = RequestValidator(token)
    if command == "sign":
        print(validator.compute_signature(url, form))
    else:
        print("true" if validator.validate(url, form, argv[3]) else "false")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
