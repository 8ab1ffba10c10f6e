"""How every script leaves: user errors as one line and status 2, Ctrl-C as status 130."""

import sys
from collections.abc import Callable, Sequence

from utils.errors import UserError

USER_ERROR_STATUS = 2
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what shells report for Ctrl-C


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Call a script's `main(argv)`, turning a `UserError` into `error: <message>` on stderr
    with exit status 2, and Ctrl-C (or SIGTERM during training) into exit status 130."""
    try:
        main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(USER_ERROR_STATUS) from None
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        raise SystemExit(INTERRUPTED_STATUS) from None
