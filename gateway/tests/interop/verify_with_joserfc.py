"""Verify a Trust OS compact JWS with an off-the-shelf JOSE library (joserfc), no Trust OS code.

Usage: python verify_with_joserfc.py JWKS_FILE JWS_FILE
Prints {"header": ..., "payload": ...} and exits 0 when the signature verifies under the JWKS;
prints the library's error and exits 1 otherwise.
"""

import json
import sys

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet


def main() -> int:
    jwks_path, jws_path = sys.argv[1], sys.argv[2]
    with open(jwks_path, encoding="utf-8") as handle:
        key_set = KeySet.import_key_set(json.load(handle))
    with open(jws_path, encoding="utf-8") as handle:
        token = handle.read().strip()
    try:
        verified = jws.deserialize_compact(token, key_set, algorithms=["EdDSA"])
    except (JoseError, ValueError) as error:
        print(f"rejected: {type(error).__name__}: {error}")
        return 1
    print(json.dumps({"header": verified.protected, "payload": json.loads(verified.payload)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
